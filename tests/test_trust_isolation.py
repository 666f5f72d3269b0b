"""No test can break the next (issue 12): a pytest run in which each test does one of the
breaking things, and the test after it checks that its board is clean, on the emulator's
``generic`` and ``legacy`` boards, the micro:bit's real 1.9.2 firmware (``microbit``) and the
real unix port."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(240)

SUITE = r"""
import pytest


def check_clean(s):
    assert s.eval("1 + 1") == 2
    assert s.context.global_variables == {}
    assert s.exec("print('only this')").replace("\r\n", "\n") == "only this\n"


def test_fill_the_heap(device_session):
    device_session.exec(
        "hog = []\nn = 1 << 20\nwhile n >= 16:\n try:\n  hog.append(bytearray(n))\n"
        " except MemoryError:\n  n //= 2"
    )


def test_clean_after_a_full_heap(device_session):
    check_clean(device_session)


def test_replace_import(device_session):
    device_session.exec("import builtins\nbuiltins.__import__ = lambda *a, **k: 1 / 0")


def test_clean_after_a_replaced_import(device_session):
    check_clean(device_session)
    assert device_session.exec("import gc\nprint(gc.mem_free() > 0)").strip() == "True"


def test_raise_the_opt_level(device_session):
    device_session.exec(
        "try:\n import micropython\n micropython.opt_level(3)\nexcept Exception:\n pass"
    )


def test_asserts_work_after_opt_level(device_session):
    from pytest_mpsession import DeviceError

    with pytest.raises(DeviceError) as info:
        device_session.exec("assert 1 == 2, 'kept'")
    assert info.value.exc_type == "AssertionError"


def test_leave_a_scheduled_callback(device_session):
    device_session.exec(
        "try:\n import micropython\n micropython.schedule(lambda a: print('stray'), 0)\n"
        "except Exception:\n pass"
    )


def test_clean_after_a_scheduled_callback(device_session):
    check_clean(device_session)


def test_grow_sys_path_and_import(device_session):
    device_session.exec(
        "import sys\ntry:\n sys.path.append('/nowhere')\nexcept Exception:\n pass\n"
        # (math: every board has it; a 1.9.2 micro:bit has no json)
        "import math"
    )


def test_sys_path_is_back(device_session):
    check_clean(device_session)
    assert device_session.eval("'/nowhere' in getattr(__import__('sys'), 'path', [])") is False


def test_exit_and_print_control_bytes(device_session):
    assert device_session.exec("print('a\x04b')\nraise SystemExit") .startswith("a\x04b")


def test_clean_after_exit(device_session):
    check_clean(device_session)
"""


@pytest.fixture(params=["mpmock://generic", "mpmock://legacy", "mpmock://microbit", "unix"])
def port(request: pytest.FixtureRequest) -> str:
    if request.param == "unix":
        return str(request.getfixturevalue("unix_port"))
    return str(request.param)


def test_no_test_breaks_the_next(pytester: pytest.Pytester, port: str) -> None:
    pytester.makepyfile(test_breaking=SUITE)
    result = pytester.runpytest(f"--mp-port={port}", "-v", "-p", "no:randomly")
    result.assert_outcomes(passed=12)
