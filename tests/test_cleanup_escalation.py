"""A ``clean`` cleanup that cannot undo what a test did escalates to a soft reset and says
so in the report (issue 12): a teardown section, a user property in the JUnit record and a
terminal summary line; the test that did it keeps its verdict and the next starts clean."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(180)

SUITE = r"""
def test_fill_the_heap_for_good(device_session):
    # the heap left full, held where dropping the session's namespace does not free it:
    # the cleanup cannot even compile, so the board is soft reset
    device_session.exec(
        "import sys\nhog = []\nsys.hog = hog\nn = 1 << 20\nwhile n >= 16:\n try:\n"
        "  hog.append(bytearray(n))\n except MemoryError:\n  n //= 2"
    )


def test_next_one_is_clean(device_session):
    assert device_session.eval("len([1, 2, 3])") == 3
    assert device_session.exec("import sys\nprint(hasattr(sys, 'hog'))").strip() == "False"
"""


def test_an_escalated_cleanup_is_reported_not_failed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_escalate=SUITE)
    result = pytester.runpytest_subprocess(
        "--mp-port=mpmock://generic", "-p", "no:cacheprovider", "--junitxml=out.xml", "-rA"
    )
    result.assert_outcomes(passed=2)
    escalated = [line for line in result.outlines if "cleanup escalated" in line]
    summary = [line for line in escalated if line.startswith("mpsession: ")]
    if not summary:
        pytest.fail("no escalation reported:\n" + result.stdout.str())
    assert "test_fill_the_heap_for_good" in summary[0]
    assert not any("test_next_one_is_clean" in line for line in summary)
    xml = (pytester.path / "out.xml").read_text()
    assert 'name="mpsession_cleanup_escalated"' in xml


PUT_BACK = r"""
def test_replace_builtins(device_session):
    device_session.exec(
        "import builtins\nbuiltins.len = lambda x: 0\nbuiltins.sorted = None\n"
        "builtins.isinstance = lambda a, b: False"
    )


def test_builtins_are_back(device_session):
    assert device_session.eval("len([1, 2, 3])") == 3
    assert device_session.eval("sorted([2, 1])") == [1, 2]
    assert device_session.eval("isinstance(1, int)") is True
"""


@pytest.mark.parametrize("profile", ["generic", "unix"])
def test_replaced_builtins_are_put_back_without_a_reset(
    pytester: pytest.Pytester, profile: str
) -> None:
    pytester.makepyfile(test_builtins=PUT_BACK)
    result = pytester.runpytest_subprocess(
        f"--mp-port=mpmock://{profile}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)
    assert not [line for line in result.outlines if "cleanup escalated" in line]


RESCHEDULE = r"""
import pytest

ROOM = []
# How many callbacks the board's schedule queue takes from inside one (where nothing else
# runs): its room left by what is still pending.
PROBE = (
    "import micropython\nq = [0]\ndef t(a):\n k = 0\n try:\n  while k < 32:\n"
    "   micropython.schedule(lambda a: None, 0)\n   k += 1\n except RuntimeError:\n  pass\n"
    " q[0] = k\nmicropython.schedule(t, 0)\nfor i in range(100):\n pass\nprint(q[0])"
)


def has_schedule(s):
    return s.eval("hasattr(__import__('micropython'), 'schedule')")


def test_leave_a_callback_that_schedules_itself(device_session):
    if not has_schedule(device_session):
        return  # a 1.9-era board (legacy): nothing to leave, and no false alarm below
    ROOM.append(int(device_session.exec(PROBE)))
    # it runs whenever the board runs code and schedules itself again: draining the queue
    # never ends, only a reset stops it
    device_session.exec(
        "import micropython\nn = [0]\n"
        "def again(a):\n n[0] += 1\n micropython.schedule(again, a)\n"
        "micropython.schedule(again, 0)\nfor i in range(10):\n pass"
    )
    assert device_session.eval("n[0]") > 1


def test_leave_a_callback_that_runs_once(device_session):
    # drained by the cleanup: no reset for that
    if has_schedule(device_session):
        device_session.exec("import micropython\nmicropython.schedule(lambda a: None, 0)")


def test_next_one_is_clean(device_session):
    assert device_session.exec("print('only this')").replace("\r\n", "\n") == "only this\n"
    if ROOM:
        assert int(device_session.exec(PROBE)) == ROOM[0]
"""


@pytest.mark.parametrize("profile", ["unix_port", "generic", "legacy"])
def test_a_callback_that_schedules_itself_escalates(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, profile: str
) -> None:
    port = (
        str(request.getfixturevalue("unix_port"))
        if profile == "unix_port"
        else f"mpmock://{profile}"
    )
    pytester.makepyfile(test_reschedule=RESCHEDULE)
    result = pytester.runpytest_subprocess(
        f"--mp-port={port}", "-p", "no:cacheprovider", "-p", "no:randomly", "-rA"
    )
    result.assert_outcomes(passed=3)
    summary = [line for line in result.outlines if line.startswith("mpsession: ")]
    escalated = [line for line in summary if "cleanup escalated" in line]
    if profile == "legacy":
        # MicroPython 1.9 had no micropython.schedule: nothing to escalate
        assert escalated == [], result.stdout.str()
        return
    assert len(escalated) == 1, result.stdout.str()
    assert "test_leave_a_callback_that_schedules_itself" in escalated[0]
    assert "micropython.schedule" in escalated[0]
