"""Attacks on board tests sent ahead (``--mp-board-tests``: the next output test starts on
the board as the one before it ends, see ``BoardTestItem._send_next_ahead``).

Each attack runs the same files twice where it can: as they run (tests sent ahead) and with
``--maxfail=1000`` (nothing goes ahead, the run otherwise the same), and asks for the same
verdicts, and for the tests after the attacking one to pass.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
import serial
from test_board_tests import COUNT_AHEAD, _ahead_counts, _output_files

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(300)

_VERDICT = re.compile(r"(PASSED|FAILED|ERROR|XFAIL|XPASS) (\S+\.py::\S+)")
_SKIPPED = re.compile(r"SKIPPED \[\d+\] (\S+\.py):\d+")


def verdicts(result: pytest.RunResult) -> dict[str, str]:
    """Each test's verdict, from the short summary of ``-rA``."""
    seen: dict[str, str] = {}
    for line in result.outlines:
        m = _VERDICT.match(line)
        if m is not None:
            seen[m.group(2)] = m.group(1)
        m = _SKIPPED.match(line)
        if m is not None:  # (an output test: its file is its id)
            name = m.group(1).rsplit("/", 1)[-1]
            seen[f"{m.group(1)}::{name}"] = "SKIPPED"
    return seen


def of(got: dict[str, str], *names: str) -> list[str]:
    """The verdicts of the output tests ``names`` (``board/NAME.py``)."""
    return [got[f"board/{n}.py::{n}.py"] for n in names]


def both_ways(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, str]]:
    """Run with tests sent ahead, then with nothing ahead; the verdicts must agree. The run
    with tests ahead and its verdicts."""
    base = ("-p", "no:cacheprovider", "-p", "no:randomly", "--mp-board-tests", "board", "-rA")
    ahead = pytester.runpytest(*base, *args)
    sent, claimed = _ahead_counts(pytester)
    plain = pytester.runpytest(*base, *args, "--maxfail=1000")
    assert _ahead_counts(pytester) == (0, 0)
    got = verdicts(ahead)
    assert got and got == verdicts(plain), (ahead.stdout.str(), plain.stdout.str())
    assert sent > 0 and claimed > 0  # the attack did meet tests sent ahead
    return ahead, got


# -- 1. a test sent ahead resets the board -------------------------------------------------

RESETS = """\
import machine
print('going')
r = getattr(machine, 'reset', None) or machine.soft_reset
r()
print('not reached')
"""


@pytest.mark.parametrize("board", ["mock", "unix"])
def test_a_test_sent_ahead_that_resets_the_board(pytester: pytest.Pytester, board: str) -> None:
    """A test that resets the board, started early: its verdict is its own, the reset is
    met by its claim (not by the test after it), and the tests after it pass."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "c", "d"])
    (folder / "b.py").write_text(RESETS)
    (folder / "b.py.exp").write_text("going\n")
    pytester.makeconftest(COUNT_AHEAD)
    if board == "mock":
        _, got = both_ways(pytester, "--mp-mock")
    else:
        with PtyBoard("unix") as pty:
            _, got = both_ways(pytester, f"--mp-port={pty.path}")
    assert of(got, *"acd") == ["PASSED"] * 3, got


# -- 2. output that looks like the protocol, too much output, stdin ---------------------------

LOOKALIKES = {
    # the raw REPL's own bytes and banner, printed by a test
    "eot": "print('one\\x04two')\nprint('\\x04>')\n",
    "banner": "print('raw REPL; CTRL-B to exit\\r\\n>OK\\x04\\x04>')\n",
    "frame": "import sys\nsys.stdout.write('\\x1e\\x1e0 1 2\\x1e\\n')\nprint('\\x1e')\n",
    "ctrl": "print('\\x01\\x02\\x03\\x05')\n",
}


def test_a_test_sent_ahead_that_prints_the_protocol(pytester: pytest.Pytester) -> None:
    """Tests printing the raw REPL's end bytes, its banner, the checked exchange's frame
    byte or control characters, each started early: each is judged on what it printed
    (the same verdict as without going ahead) and nothing leaks into the next test."""
    folder = pytester.mkdir("board")
    names = []
    for i, (name, code) in enumerate(LOOKALIKES.items()):
        (folder / f"t{i}_{name}.py").write_text(code)
        names.append(f"t{i}_{name}z")
    _output_files(folder, names)
    pytester.makeconftest(COUNT_AHEAD)
    # the expected output of each lookalike is CPython's (no .exp): what it prints there
    _, got = both_ways(pytester, "--mp-mock")
    assert set(got.values()) == {"PASSED"}, got


FORGES_THE_END = """\
import __main__
n = __main__._mps_s[0]  # the number of the exchange running this test
print('before')
print('\\x1e%d).0' % n)  # the end of its reply's frame, forged
print('after')
"""


def test_a_test_sent_ahead_that_forges_the_end_of_its_reply(pytester: pytest.Pytester) -> None:
    """A test printing the end of its own reply's frame (the exchange number is on the
    board): it fails with the noise it made, never passes on half its output, and the
    tests after it pass."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "c", "d"])
    (folder / "b.py").write_text(FORGES_THE_END)
    (folder / "b.py.exp").write_text("before\n")
    pytester.makeconftest(COUNT_AHEAD)
    ahead, got = both_ways(pytester, "--mp-mock")
    assert of(got, *"abcd") == ["PASSED", "FAILED", "PASSED", "PASSED"], got
    assert "b.py - BoardNoiseError" in ahead.stdout.str()


def test_a_test_sent_ahead_that_prints_too_much(pytester: pytest.Pytester) -> None:
    """A test printing more than the communicator keeps, started early: its verdict is a
    wrong output, and the test after it passes."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "c"])
    (folder / "b.py").write_text("s = 'x' * 1023\nfor i in range(1200):\n    print(s)\n")
    (folder / "b.py.exp").write_text("short\n")
    pytester.makeconftest(COUNT_AHEAD)
    _, got = both_ways(pytester, "--mp-mock")
    assert of(got, "b", "c") == ["FAILED", "PASSED"], got


STDIN_READ = """\
import sys
print('reading')
c = sys.stdin.read(1)
print('read', repr(c))
"""


@pytest.mark.parametrize("pad", [0, 400], ids=["short", "streamed"])
def test_a_test_sent_ahead_that_reads_stdin(pytester: pytest.Pytester, pad: int) -> None:
    """A board test reading ``sys.stdin`` (the link the code travels on; a long test's code
    is read from it by the board's wrapper): it reads nothing of its own code or of the next
    test's, waits until its timeout, and the test after it passes."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "c"])
    (folder / "b.py").write_text("# " + "p" * pad + "\n" + STDIN_READ)
    (folder / "b.py.exp").write_text("reading\n")
    pytester.makeconftest(COUNT_AHEAD)
    ahead, got = both_ways(pytester, "--mp-mock", "--mp-timeout", "1")
    assert of(got, "b", "c") == ["FAILED", "PASSED"], got
    assert "DeviceTimeout" in ahead.stdout.str()
    assert "read '" not in ahead.stdout.str()


# -- 3. timeouts ---------------------------------------------------------------------------

SLOW_REPORT = """
import time


def pytest_runtest_logreport(report):
    if report.when == "call" and report.nodeid.endswith("a.py"):
        time.sleep(1.5)  # a slow reporting plugin, while b runs ahead
"""


@pytest.mark.parametrize("pad", [0, 400], ids=["short", "streamed"])
def test_the_time_pytest_spends_between_tests_is_not_the_next_ones(
    pytester: pytest.Pytester, pad: int
) -> None:
    """A plugin that takes longer to report a test than ``--mp-timeout``: the test sent
    ahead meanwhile, done long before (its reply waiting unread), is not timed out for the
    host's slowness, nor is its code (a long one, streamed) taken for lost."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "c"])
    # b's reply comes a moment after it starts: never read with the acknowledgement
    code = "# " + "p" * pad + "\nimport time\ntime.sleep(0.2)\nprint('b done')\n"
    (folder / "b.py").write_text(code)
    (folder / "b.py.exp").write_text("b done\n")
    pytester.makeconftest(COUNT_AHEAD + SLOW_REPORT)
    _, got = both_ways(pytester, "--mp-mock", "--mp-timeout", "1")
    assert set(got.values()) == {"PASSED"}, got
    assert _ahead_counts(pytester) == (0, 0)  # (the plain run's)


@pytest.mark.parametrize("limit", ["--mp-timeout", "--timeout"])
def test_a_test_sent_ahead_that_never_ends(pytester: pytest.Pytester, limit: str) -> None:
    """A test that spins forever, started early, met by ``--mp-timeout`` or by
    pytest-timeout (its signal firing while the host waits on the claim): it fails with
    that timeout, and the tests after it pass."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "c", "d"])
    (folder / "b.py").write_text("x = 1\nwhile x:\n    pass\n")
    (folder / "b.py.exp").write_text("")
    pytester.makeconftest(COUNT_AHEAD)
    args = ["--mp-timeout", "1"] if limit == "--mp-timeout" else ["--timeout", "3"]
    ahead, got = both_ways(pytester, "--mp-mock", *args)
    assert of(got, *"abcd") == ["PASSED", "FAILED", "PASSED", "PASSED"]
    word = "DeviceTimeout" if limit == "--mp-timeout" else "Timeout (>3.0s) from pytest-timeout"
    assert word in ahead.stdout.str()


# -- 4. faults of the link and the board while tests go ahead -------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        "seed=1&disconnect=0.05&reset=0.05",
        "seed=3&disconnect=0.05&reset=0.05",
        "seed=1&garbage=0.03",
    ],
)
def test_faults_while_tests_go_ahead_never_give_a_wrong_verdict(
    pytester: pytest.Pytester, faults: str
) -> None:
    """Dropped links, resets (its RAM lost with the runner's code) and noise of an emulated
    board (seeded) while each test starts early: a test may fail with the fault's own
    one-line error, or pass, never fail on a wrong output or a missing runner, nor pass a
    wrong one; every test after a fault is judged on its own."""
    folder = pytester.mkdir("board")
    names = [f"t{i:02}" for i in range(16)]
    _output_files(folder, names, bad="t07")
    pytester.makeconftest(COUNT_AHEAD)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "no:randomly", "--mp-board-tests", "board", "-rA",
        f"--mp-port=mpmock://generic?{faults}", "--mp-timeout", "3",
    )  # fmt: skip
    got = verdicts(result)
    out = result.stdout.str()
    assert len(got) == len(names), out
    assert got["board/t07.py::t07.py"] == "FAILED"
    fault = re.compile(r"FAILED \S+ - Board\w+Error: ")
    for line in result.outlines:
        if line.startswith("FAILED") and "t07.py" not in line:
            assert fault.match(line), out  # a fault's error, never a verdict on the output
    assert "_pytest" not in out  # each fault in its one line, no host traceback
    sent, claimed = _ahead_counts(pytester)
    assert sent > 0 and claimed > 0


# -- the runner's code lost --------------------------------------------------------------------

REMOVES_RUNNER = """\
import __main__
for k in [k for k in dir(__main__) if k.startswith('_mp')]:
    delattr(__main__, k)  # the runner's code and the checked-exchange wrapper
print('gone')
"""

REMOVE_BETWEEN = """
from pytest_mpsession.plugin.state import get_state

CONFIG = []


def pytest_configure(config):
    CONFIG.append(config)


def pytest_runtest_logreport(report):
    if report.when == "call" and report.nodeid.endswith(("a.py", "test_a_first")):
        # as a board that lost its RAM unseen: the runner's code gone between two tests
        comm = get_state(CONFIG[0]).board.manager.communicator
        comm.exec("for k in [k for k in globals() if k[:5] == '_mpbt']:\\n del globals()[k]")
"""


@pytest.mark.parametrize("board", ["mock", "unix"])
@pytest.mark.parametrize("how", ["by a test", "between tests"])
def test_the_runner_removed_from_the_board(pytester: pytest.Pytester, board: str, how: str) -> None:
    """An output test that removes the runner's code and the checked-exchange wrapper from
    the board's ``__main__``: they are put back as the test ends (it passes, the next ones
    too); a unit test removing the runner's code: the next test passes. Gone between two
    tests (a board that lost its RAM unseen): the next test finds
    it gone (a current MicroPython says "isn't defined", 1.9 "is not defined"), sends it
    again and passes."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "c"])
    (folder / "b.py").write_text(REMOVES_RUNNER)
    (folder / "b.py.exp").write_text("gone\n")
    (folder / "test_u.py").write_text(
        "import unittest\n\n\nclass T(unittest.TestCase):\n"
        "    def test_a_first(self):\n"
        + (
            "        import __main__\n"
            "        for k in [k for k in dir(__main__) if k.startswith('_mpbt')]:\n"
            "            delattr(__main__, k)  # (the runner's code only)\n"
            if how == "by a test"
            else "        pass\n"
        )
        + "\n    def test_b_after(self):\n        self.assertEqual(1 + 1, 2)\n"
    )
    if how == "between tests":
        pytester.makeconftest(REMOVE_BETWEEN)
    args = ["-p", "no:cacheprovider", "-p", "no:randomly", "--mp-board-tests", "board", "-rA"]
    if board == "mock":
        result = pytester.runpytest(*args, "--mp-mock")
    else:
        with PtyBoard("unix") as pty:
            result = pytester.runpytest(*args, f"--mp-port={pty.path}")
    got = verdicts(result)
    first = got.pop("board/test_u.py::T::test_a_first")  # (may fail: it broke its runner)
    assert set(got.values()) == {"PASSED"} and len(got) == 4, result.stdout.str()
    assert first == "PASSED" or how == "by a test"


# -- 6, 7. Ctrl-C at moments of a run; a second pytest on the same board ----------------------


def _read_until(proc: subprocess.Popen[bytes], want: bytes, seen: bytearray) -> None:
    """Read the process's output until ``want`` (a deadline, never a sleep)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + 60
    while want not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{want!r} never came: {bytes(seen)!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"ended before {want!r}: {bytes(seen)!r}"
            seen.extend(chunk)


def _answers(port: str) -> bool:
    """Whether the board answers Ctrl-A at once (at its raw-REPL prompt, not running code)."""
    with serial.serial_for_url(port, timeout=5) as link:
        link.write(b"\x01")
        return b"raw REPL" in link.read_until(b"raw REPL")


@pytest.mark.parametrize("moment", ["a starts", "b ahead", "spin claimed"])
def test_ctrl_c_at_any_moment_leaves_the_board_answering(
    pytester: pytest.Pytester, moment: str
) -> None:
    """SIGINT to pytest as a test starts, while the next one runs ahead, or while the host
    waits on a test (sent ahead) that never ends: the run ends interrupted (exit 2) and the
    board answers at its prompt, not running a test nobody waits for. In the last case a
    second pytest on the same board meanwhile gets the one-line busy error, and the first
    is unharmed."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "b", "d"])
    (folder / "c.py").write_text("x = 1\nwhile x:\n    pass\n")  # sent ahead after b
    (folder / "c.py.exp").write_text("")
    want = {
        "a starts": b"a.py::a.py ",
        "b ahead": b"a.py::a.py PASSED",
        "spin claimed": b"b.py::b.py PASSED",
    }
    with PtyBoard("unix") as pty:
        args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]
        args += [f"--mp-port={pty.path}", "--mp-board-tests", "board", "-v", "--mp-timeout=600"]
        seen = bytearray()
        with subprocess.Popen(
            args, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ) as proc:
            try:
                _read_until(proc, want[moment], seen)
                if moment == "spin claimed":
                    second = pytester.runpytest_subprocess(
                        "-p", "no:randomly", f"--mp-port={pty.path}", "--mp-board-tests", "board"
                    )
                    assert second.ret == pytest.ExitCode.USAGE_ERROR
                    err = second.stderr.str() + second.stdout.str()
                    assert re.search(r"board busy: \S+ is in use by pid \d+", err), err
                    assert "Traceback" not in err
                    assert proc.poll() is None  # the first goes on
                proc.send_signal(signal.SIGINT)
                _read_until(proc, b"KeyboardInterrupt", seen)
                assert proc.wait(60) == pytest.ExitCode.INTERRUPTED, bytes(seen)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert _answers(pty.path), bytes(seen)


# -- 5. other boards, other runs ---------------------------------------------------------------

SHUFFLE = """
import random


def pytest_collection_modifyitems(items):
    random.Random(3).shuffle(items)  # (pytest-randomly's way: any order)
"""

UNIT = """\
import unittest


class T(unittest.TestCase):
    def test_ok(self):
        self.assertEqual(2 * 3, 6)

    def test_bad(self):
        self.assertEqual(2 * 3, 7)
"""


@pytest.mark.parametrize(
    "case", ["legacy", "matrix", "two boards", "xdist", "random order", "--lf"]
)
def test_verdicts_with_other_boards_and_runs(pytester: pytest.Pytester, case: str) -> None:
    """Output tests mixed with unit tests on a small board (nothing goes ahead), a firmware
    matrix or two boards in one process (nothing goes ahead), two xdist workers with a
    board each, a shuffled order (as pytest-randomly's), and ``--lf``: every verdict is the
    test's own."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "b", "c", "cc", "f"], bad="c")
    (folder / "cc.py.exp").write_text("not cc\n")
    (folder / "d_unit.py").write_text(UNIT)
    pytester.makeconftest(COUNT_AHEAD + (SHUFFLE if case == "random order" else ""))
    args = ["--mp-board-tests", "board", "-rA"]
    want = {f"board/{n}.py::{n}.py": "PASSED" for n in "abf"}
    want["board/c.py::c.py"] = want["board/cc.py::cc.py"] = "FAILED"
    want["board/d_unit.py::T::test_ok"] = "PASSED"
    want["board/d_unit.py::T::test_bad"] = "FAILED"
    ahead = case in ("random order", "--lf")
    if case == "legacy":
        result = run_plain(pytester, "--mp-mock=legacy", *args)
    elif case == "matrix":
        ports = ["--mp-port=mpmock://generic", "--mp-port=mpmock://legacy", "--mp-dist=each"]
        result = run_plain(pytester, *ports, *args)
        labels = ["generic@mpmock://generic", "microbit@mpmock://legacy"]
        want = {f"{k}[{label}]": v for k, v in want.items() for label in labels}
    elif case == "two boards":  # one process routing to both: nothing goes ahead
        result = run_plain(pytester, "--mp-port=mpmock://generic", "--mp-port=mpmock://rp2", *args)
    elif case == "xdist":
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-p", "no:randomly", "--mp-mock", *args, "-n", "2"
        )
    elif case == "random order":
        result = run_plain(pytester, "--mp-mock", *args)
    else:
        pytester.runpytest("-p", "no:randomly", "--mp-mock", *args).assert_outcomes(
            passed=4, failed=3
        )
        result = pytester.runpytest("-p", "no:randomly", "--mp-mock", "--lf", *args)
        want = {k: v for k, v in want.items() if v == "FAILED"}
    got = verdicts(result)
    assert got == want, result.stdout.str()
    if case != "xdist":  # (each worker writes its own counts)
        sent, claimed = _ahead_counts(pytester)
        assert (sent > 0) == ahead and claimed == sent, (sent, claimed)


def run_plain(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", *args)


# -- 3b. pytest-timeout counts the test before the one sent ahead ------------------------------

SLOW_LINK = """
from pytest_mpsession.communicator import Communicator

_line_rate = Communicator._line_rate
Communicator._line_rate = lambda self: 100.0  # bytes a second: a slow serial link


def pytest_sessionfinish(session):
    Communicator._line_rate = _line_rate  # pytester runs in this process
"""


@pytest.mark.parametrize("timeout", [None, "3", "marker"])
def test_the_next_code_goes_ahead_only_in_a_small_part_of_the_timeout_left(
    pytester: pytest.Pytester, timeout: str | None
) -> None:
    """pytest-timeout's limit counts the test that sends the next one ahead: over a link
    slow for the next test's code (about 3 s of it here), nothing is sent ahead by a test
    under a 3 s limit (``--timeout``, or its marker), and everything is without one."""
    folder = pytester.mkdir("board")
    for name in "abc":
        (folder / f"{name}.py").write_text(f"# {'p' * 240}\nprint('{name}')\n")
        (folder / f"{name}.py.exp").write_text(f"{name}\n")
    conftest = COUNT_AHEAD + SLOW_LINK
    args = ["--mp-mock"]
    if timeout == "3":
        args.append("--timeout=3")
    elif timeout == "marker":
        conftest += (
            "\n\nimport pytest\n\n\ndef pytest_collection_modifyitems(items):\n"
            "    items[0].add_marker(pytest.mark.timeout(3))\n"
        )
    pytester.makeconftest(conftest)
    run_plain(pytester, "--mp-board-tests", "board", *args).assert_outcomes(passed=3)
    # (a marker on a alone: b, not limited, sends c ahead)
    want = {None: (2, 2), "3": (0, 0), "marker": (1, 1)}[timeout]
    assert _ahead_counts(pytester) == want
