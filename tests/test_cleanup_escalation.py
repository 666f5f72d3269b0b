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
