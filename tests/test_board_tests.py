"""Tests that run on the board (``--mp-board-tests``), through pytester.

Every unit-test feature and the output-test verdicts on the default emulated board, on the
16 KB MicroPython 1.9-era ``legacy`` board (no ``unittest`` there: the plugin's own) and on
the real MicroPython unix port behind a PTY; isolation between board tests; bad input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(300)

BOARDS = ["mock", "legacy", "unix"]


@pytest.fixture(params=BOARDS)
def board_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The options naming the board: the emulator, the legacy board, the unix port on a PTY."""
    if request.param == "mock":
        yield ["--mp-mock"]
    elif request.param == "legacy":
        yield ["--mp-mock=legacy"]
    else:
        with PtyBoard("unix") as board:
            yield [f"--mp-port={board.path}"]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", *args)


# Small files: a 16 KB board loads each with the plugin's runner and unittest beside it.
CASES = """\
import unittest

log = []


class TestA(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        log.append("up")

    @classmethod
    def tearDownClass(cls):
        log.append("down")

    def setUp(self):
        self.x = 3

    def tearDown(self):
        log.append("td")

    def test_equal(self):
        self.assertEqual(self.x, 3)

    def test_fails(self):
        self.assertEqual(self.x, 4)


class TestB(unittest.TestCase):
    def test_after_a(self):
        self.assertEqual(log, ["up", "td", "td", "down"])
"""

SKIPS = """\
import unittest


class TestC(unittest.TestCase):
    def test_raises(self):
        with self.assertRaises(KeyError):
            {}["k"]

    @unittest.skip("not here")
    def test_skip(self):
        pass

    def test_skiptest(self):
        self.skipTest("at run time")
"""

FUNCS = """\
def helper(n):
    return n * 2


def test_pass():
    assert helper(2) == 4


def test_fail():
    value = helper(3)
    assert value == 7, "helper gave %d" % value
"""


def test_unit_tests_every_feature(pytester: pytest.Pytester, board_args: list[str]) -> None:
    pytester.makepyfile(test_cases=CASES, test_funcs=FUNCS, test_skips=SKIPS)
    (pytester.path / "board").mkdir()
    for name in ("test_cases.py", "test_funcs.py", "test_skips.py"):
        (pytester.path / name).rename(pytester.path / "board" / name)
    result = run(pytester, *board_args, "--mp-board-tests", "board", "-v", "-rs")
    result.assert_outcomes(passed=4, failed=2, skipped=2)
    out = result.stdout.str()
    # one item per test, named as pytest names tests
    result.stdout.fnmatch_lines(
        [
            "*board/test_cases.py::TestA::test_equal PASSED*",
            "*board/test_cases.py::TestB::test_after_a PASSED*",
            "*board/test_funcs.py::test_pass PASSED*",
            "*board/test_skips.py::TestC::test_raises PASSED*",
            "*board/test_skips.py::TestC::test_skip SKIPPED (not here)*",
            "*board/test_skips.py::TestC::test_skiptest SKIPPED (at run time)*",
        ]
    )
    # failures: the assertion message and the board's traceback at the file's own lines
    assert "AssertionError: 3 != 4" in out
    assert 'File "board/test_cases.py", line 25, in test_fails' in out
    assert "self.assertEqual(self.x, 4)" in out
    assert "AssertionError: helper gave 6" in out
    assert 'File "board/test_funcs.py", line 11, in test_fail' in out


OUTPUT_OK = 'print("hello", 6 * 7)\n'
OUTPUT_BAD = 'print("hello")\nprint(1 + 1)\n'
OUTPUT_CRASH = 'print("before")\n\n\ndef f():\n    return 1 // 0\n\n\nf()\n'
OUTPUT_SKIP = 'print("SKIP")\nraise SystemExit\n'
OUTPUT_CPYTHON = "for i in range(3):\n    print(i, i * i)\n"


def test_output_tests(pytester: pytest.Pytester, board_args: list[str]) -> None:
    board = pytester.mkdir("board")
    for name, code in [
        ("ok.py", OUTPUT_OK),
        ("bad.py", OUTPUT_BAD),
        ("crash.py", OUTPUT_CRASH),
        ("skipper.py", OUTPUT_SKIP),
        ("cpython.py", OUTPUT_CPYTHON),
    ]:
        (board / name).write_text(code)
    (board / "ok.py.exp").write_text("hello 42\n")
    (board / "bad.py.exp").write_text("hello\n3\n")
    (board / "crash.py.exp").write_text("before\n")
    result = run(pytester, *board_args, "--mp-board-tests", "board", "-rs", "-v")
    result.assert_outcomes(passed=2, failed=2, skipped=1)
    out = result.stdout.str()
    # each failure headed by its file, and the verbose lines by the node id as it is
    result.stdout.fnmatch_lines(["*_ bad.py (output test) _*", "*_ crash.py (output test) _*"])
    result.stdout.fnmatch_lines(["board/ok.py::ok.py PASSED*"])
    assert "test session _" not in out and "::py " not in out
    # a unified diff, expected vs printed
    result.stdout.fnmatch_lines(["*--- expected (bad.py.exp)*", "*+++ printed by the board*"])
    assert "-3\n+2" in out.replace("\r", "")
    # a crash: what it printed, then the traceback at the file's lines
    assert 'File "board/crash.py", line 5, in f' in out
    assert "ZeroDivisionError" in out
    assert "it printed SKIP" in out


ISOLATION_A = """\
import os
import sys

import micropython

LEFTOVER = 1
# (a 1.9.2 micro:bit has no sys.path: there the other leftovers are the check)
getattr(sys, "path", []).append("/nowhere")
micropython.opt_level(3)
f = open("junk.txt", "w")
f.write("x")
f.close()
print("done")
"""

ISOLATION_B = """\
import os
import sys

import micropython

print("LEFTOVER" in globals(), "/nowhere" in getattr(sys, "path", []))
print(micropython.opt_level(), "junk.txt" in os.listdir())
assert True, "asserts still run"
"""


def test_isolation_between_board_tests(pytester: pytest.Pytester, board_args: list[str]) -> None:
    board = pytester.mkdir("board")
    (board / "a_leaves_state.py").write_text(ISOLATION_A)
    (board / "a_leaves_state.py.exp").write_text("done\n")
    (board / "b_checks.py").write_text(ISOLATION_B)
    (board / "b_checks.py.exp").write_text("False False\n0 False\n")
    result = run(pytester, *board_args, "--mp-board-tests", "board")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("ending", ["raises", "exits", "times out"])
@pytest.mark.parametrize("board", ["mock", "unix"])
def test_isolation_after_a_test_that_does_not_end_well(
    pytester: pytest.Pytester, board: str, ending: str
) -> None:
    """What a test left behind is put back even when it raised, called ``sys.exit()`` or was
    interrupted by the timeout (the restore travels with the run, in a ``finally``)."""
    folder = pytester.mkdir("board")
    end = {"raises": "raise ValueError('x')", "exits": "import sys\nsys.exit(1)",
           "times out": "while True:\n    pass"}[ending]  # fmt: skip
    (folder / "a_leaves_state.py").write_text(ISOLATION_A.replace('print("done")', end) + "\n")
    (folder / "a_leaves_state.py.exp").write_text("")
    (folder / "b_checks.py").write_text(ISOLATION_B)
    (folder / "b_checks.py.exp").write_text("False False\n0 False\n")
    args = ["--mp-board-tests", "board", "-v"]
    if ending == "times out":
        args += ["--mp-timeout", "2"]
    if board == "mock":
        result = run(pytester, "--mp-mock", *args)
    else:
        with PtyBoard("unix") as pty:
            result = run(pytester, f"--mp-port={pty.path}", *args)
    result.stdout.fnmatch_lines(["*b_checks.py*PASSED*"])
    if ending == "exits":
        result.assert_outcomes(passed=2)
    else:
        result.assert_outcomes(passed=1, failed=1)


def test_board_test_files_are_never_imported_on_the_host(pytester: pytest.Pytester) -> None:
    board = pytester.mkdir("board")
    (board / "test_pins.py").write_text(
        "import machine\n\nrequires_feature = ('machine',)\n\n\ndef test_pin():\n"
        "    assert machine.Pin(2)\n"
    )
    pytester.makepyfile(test_host="def test_host():\n    assert True\n")
    result = run(pytester, "--mp-board-tests", "board", "--co", "-q")
    result.stdout.fnmatch_lines(["board/test_pins.py::test_pin", "test_host.py::test_host"])
    # no board: the board test skips with the how-to, the host test runs
    result = run(pytester, "--mp-board-tests", "board", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*no MicroPython board configured*"])
    # -k selects board tests like host tests
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board", "-k", "pin")
    result.assert_outcomes(passed=1, deselected=1)


def test_ini_key_and_requirements(pytester: pytest.Pytester) -> None:
    board = pytester.mkdir("fw")
    (board / "needs_ble.py").write_text("requires_feature = ('bluetooth',)\nprint(1)\n")
    (board / "needs_ble.py.exp").write_text("1\n")
    (board / "esp_only.py").write_text("requires_platform = (\n    'esp32',\n)\nprint(1)\n")
    (board / "esp_only.py.exp").write_text("1\n")
    pytester.makeini("[pytest]\nmp_board_tests =\n    fw/*.py\n")
    result = run(pytester, "--mp-mock", "-rs")
    result.assert_outcomes(skipped=2)
    out = result.stdout.str()
    assert "requires_feature: board lacks 'bluetooth' (micropython 1.24.1 on generic)" in out
    assert "requires_platform: board is 'generic', not 'esp32'" in out
    result = run(pytester, "--mp-mock=esp32", "-rs")
    result.assert_outcomes(passed=2)


def test_bad_input(pytester: pytest.Pytester) -> None:
    # a path that does not exist: a usage error naming it
    result = run(pytester, "--mp-mock", "--mp-board-tests", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mp-board-tests nowhere: no such file or folder*"])
    assert "Traceback" not in result.stderr.str()

    board = pytester.mkdir("board")
    (board / "good.py").write_text("print(1)\n")
    (board / "good.py.exp").write_text("1\n")
    (board / "broken.py").write_text("print(1\nx = = 2\n")
    (board / "latin.py").write_text("print('caf\\xe9')\n")
    (board / "latin.py.exp").write_bytes(b"caf\xe9\n")
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "SyntaxError" in out and "the board cannot compile the file" in out
    assert "latin.py.exp is not UTF-8 text (byte 0xe9 at offset 3): save it as UTF-8" in out

    # an unknown feature: the collection error of the requires_feature marker
    (board / "odd.py").write_text("requires_feature = ('warp_drive',)\nprint(1)\n")
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*odd.py*requires_feature('warp_drive')*unknown feature*"])


def test_xdist_and_junit(pytester: pytest.Pytester) -> None:
    board = pytester.mkdir("board")
    for i in range(6):
        (board / f"t{i}.py").write_text(f"print({i} * 2)\n")
        (board / f"t{i}.py.exp").write_text(f"{i * 2}\n")
    junit = pytester.path / "junit.xml"
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board", "-n", "2",
                 f"--junitxml={junit}")  # fmt: skip
    result.assert_outcomes(passed=6)
    assert junit.read_text().count("<testcase") == 6


def test_last_failed_and_exitfirst(pytester: pytest.Pytester) -> None:
    board = pytester.mkdir("board")
    for name, exp in [("a_ok", "1"), ("b_bad", "2"), ("c_ok", "1")]:
        (board / f"{name}.py").write_text("print(1)\n")
        (board / f"{name}.py.exp").write_text(exp + "\n")
    args = ("--mp-mock", "--mp-board-tests", "board", "-p", "no:randomly")
    pytester.runpytest(*args).assert_outcomes(passed=2, failed=1)
    # --lf: only the board test that failed runs again
    result = pytester.runpytest(*args, "--lf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*run-last-failure: rerun previous 1 failure*"])
    # -x: the run stops at the first failing board test
    result = pytester.runpytest(*args, "-x", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)


def test_timeout_interrupts_a_board_test(pytester: pytest.Pytester) -> None:
    board = pytester.mkdir("board")
    (board / "spin.py").write_text("while True:\n    pass\n")
    (board / "spin.py.exp").write_text("")
    (board / "after.py").write_text("print('still here')\n")
    (board / "after.py.exp").write_text("still here\n")
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board", "--mp-timeout", "1")
    result.assert_outcomes(passed=1, failed=1)
    assert "DeviceTimeout" in result.stdout.str()


def test_pytest_timeout_stops_a_board_test(pytester: pytest.Pytester) -> None:
    board = pytester.mkdir("board")
    (board / "a_spin.py").write_text("while True:\n    pass\n")
    (board / "a_spin.py.exp").write_text("")
    (board / "b_after.py").write_text("print('still here')\n")
    (board / "b_after.py.exp").write_text("still here\n")
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board", "--mp-timeout", "60",
                 "--timeout", "2")  # fmt: skip
    result.assert_outcomes(passed=1, failed=1)
    assert "Timeout (>2.0s) from pytest-timeout" in result.stdout.str()


STATEFUL = """\
state = []


def test_a_appends():
    state.append(1)


def test_b_sees():
    print("state", state)
    assert state == EXPECTED
"""


@pytest.mark.parametrize(("policy", "expected"), [("clean", "[1]"), ("soft", "[]")])
def test_module_sent_once_and_again_after_a_reset(
    pytester: pytest.Pytester, policy: str, expected: str
) -> None:
    board = pytester.mkdir("board")
    (board / "test_state.py").write_text(STATEFUL.replace("EXPECTED", expected))
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board", "--mp-reset", policy)
    result.assert_outcomes(passed=2)


def test_a_board_that_resets_fails_only_its_test(pytester: pytest.Pytester) -> None:
    board = pytester.mkdir("board")
    (board / "a_reset.py").write_text("import machine\nprint('going')\nmachine.reset()\n")
    (board / "a_reset.py.exp").write_text("going\n")
    (board / "b_after.py").write_text("print('back')\n")
    (board / "b_after.py.exp").write_text("back\n")
    (board / "test_c_unit.py").write_text("def test_unit():\n    assert 1 + 1 == 2\n")
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "the board reset during the call" in out or "link to the board dropped" in out


def test_cpython_output_is_cached(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CPython behind a script that logs each start: the second run starts none
    log = pytester.path / "starts.log"
    wrapper = pytester.path / "cpython.sh"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    board = pytester.mkdir("board")
    (board / "squares.py").write_text("print([i * i for i in range(5)])\n")
    (board / "words.py").write_text("print(' '.join(sorted('board tests run here'.split())))\n")
    monkeypatch.setenv("MICROPY_CPYTHON3", str(wrapper))
    args = ("--mp-mock", "--mp-board-tests", "board", "-p", "no:randomly")
    pytester.runpytest(*args).assert_outcomes(passed=2)
    assert len(log.read_text().splitlines()) == 2
    pytester.runpytest(*args).assert_outcomes(passed=2)
    assert len(log.read_text().splitlines()) == 2  # from pytest's cache
    # a changed file is run by CPython again
    (board / "words.py").write_text("print('changed')\n")
    pytester.runpytest(*args).assert_outcomes(passed=2)
    assert len(log.read_text().splitlines()) == 3


COUNT_EXCHANGES = """\
import pytest

from pytest_mpsession.communicator import Communicator

SEEN = []
_send = Communicator._send


def counted(self, data, *args, **kwargs):
    SEEN.append(bytes(data[:40]))
    return _send(self, data, *args, **kwargs)


Communicator._send = counted


def pytest_unconfigure(config):
    Communicator._send = _send  # pytester runs in this process: leave nothing patched
    with open("exchanges.txt", "w") as f:
        f.write(str(len(SEEN)))
"""


@pytest.mark.parametrize("files", [4, 7])
def test_an_output_test_is_one_exchange(pytester: pytest.Pytester, files: int) -> None:
    """Each output test after the first is one exchange: the snapshot of the board's state,
    the run and the restore travel together (no exchange of their own)."""
    counts = []
    for n in (files, files + 3):
        folder = pytester.mkdir(f"board{n}")
        for i in range(n):
            (folder / f"t{i}.py").write_text(f"print({i})\n")
            (folder / f"t{i}.py.exp").write_text(f"{i}\n")
        pytester.makeconftest(COUNT_EXCHANGES)
        run(pytester, "--mp-mock", "--mp-board-tests", str(folder)).assert_outcomes(passed=n)
        counts.append(int((pytester.path / "exchanges.txt").read_text()))
    assert counts[1] - counts[0] == 3


HOST_SETS_PATH = """\
def test_host_sets(device_session):
    device_session.exec("import sys\\nsys.path.append('/host')")
"""

HOST_SEES_PATH = """\
def test_host_sees(device_session):
    assert device_session.eval("'/host' in __import__('sys').path") is True
"""


@pytest.mark.parametrize("board", ["mock", "unix"])
def test_a_snapshot_is_taken_again_after_other_code_ran(
    pytester: pytest.Pytester, board: str
) -> None:
    """The snapshot left for the next output test is not used once a host test ran code on
    the board: the next output test's restore keeps what that test left (a stale snapshot
    would take it away)."""
    suite = pytester.mkdir("suite")  # collected in name order: a1, a2_test, a3, a4_test
    (suite / "a1.py").write_text("import sys\nsys.path.append('/a')\nprint(1)\n")
    (suite / "a1.py.exp").write_text("1\n")
    (suite / "a2_test.py").write_text(HOST_SETS_PATH)
    (suite / "a3.py").write_text("import sys\nprint('/host' in sys.path, '/a' in sys.path)\n")
    (suite / "a3.py.exp").write_text("True False\n")
    (suite / "a4_test.py").write_text(HOST_SEES_PATH)
    args = ["suite", "--mp-board-tests=suite/a1.py", "--mp-board-tests=suite/a3.py", "-v"]
    if board == "mock":
        result = run(pytester, "--mp-mock", "--mp-reset=none", *args)
    else:
        with PtyBoard("unix") as pty:
            result = run(pytester, f"--mp-port={pty.path}", "--mp-reset=none", *args)
    result.stdout.fnmatch_lines(["*a1.py*PASSED*", "*a2_test.py*PASSED*", "*a3.py*", "*a4_test*"])
    result.assert_outcomes(passed=4)


COUNT_RECOVERIES = """\
from pytest_mpsession.communicator import Communicator

KINDS = []
_recover_now = Communicator._recover_now


def counted(self, kind, *args, **kwargs):
    KINDS.append(kind)
    return _recover_now(self, kind, *args, **kwargs)


Communicator._recover_now = counted


def pytest_unconfigure(config):
    Communicator._recover_now = _recover_now  # pytester runs in this process
    with open("recoveries.txt", "w") as f:
        f.write(repr(KINDS))
"""


@pytest.mark.parametrize("board", ["mock-unix", "unix"])
def test_long_non_ascii_code_runs_without_a_recovery(pytester: pytest.Pytester, board: str) -> None:
    """Code past the stream threshold with non-ASCII text goes as a literal: a stream's
    length in bytes is not what the board's stdin.read() counts (characters), so such a
    stream was lost twice (1.5 s) and streams were off for the rest of the run."""
    folder = pytester.mkdir("board")
    body = "".join(f"print({i})\n" for i in range(100))
    (folder / "a_alpha.py").write_text('s = "\u03b1\u03b2"\nprint(len(s))\n' + body, "utf-8")
    (folder / "a_alpha.py.exp").write_text("2\n" + "".join(f"{i}\n" for i in range(100)))
    (folder / "b_ascii.py").write_text(body)
    (folder / "b_ascii.py.exp").write_text("".join(f"{i}\n" for i in range(100)))
    pytester.makeconftest(COUNT_RECOVERIES)
    if board == "mock-unix":
        result = run(pytester, "--mp-mock=unix", "--mp-board-tests", "board")
    else:
        with PtyBoard("unix") as pty:
            result = run(pytester, f"--mp-port={pty.path}", "--mp-board-tests", "board")
    result.assert_outcomes(passed=2)
    assert (pytester.path / "recoveries.txt").read_text() == "[]"


MATRIX_UNIT = """\
import sys
import unittest

loads = []
loads.append(1)


class TestM(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = 1

    def test_class(self):
        self.assertEqual(self.up, 1)
        self.assertEqual(len(loads), 1)


def test_func():
    assert len(loads) == 1


def test_on_rp2():
    assert sys.platform == "rp2", sys.platform
"""


@pytest.mark.parametrize("xdist", [False, True])
def test_mp_dist_each_runs_every_board_test_on_every_board(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    """Under ``--mp-dist each`` every board test is one item per board (its label in the
    id, its requirements judged per board), in one process holding both boards or with one
    xdist worker per board; a unit-test module is loaded once on each board."""
    folder = pytester.mkdir("board")
    (folder / "out.py").write_text("print(6 * 7)\n")
    (folder / "out.py.exp").write_text("42\n")
    (folder / "only_rp2.py").write_text('requires_platform = ("rp2",)\nprint("rp2")\n')
    (folder / "only_rp2.py.exp").write_text("rp2\n")
    (folder / "unit.py").write_text(MATRIX_UNIT)
    args = ["--mp-port=mpmock://rp2", "--mp-port=mpmock://legacy", "--mp-dist=each"]
    args += ["--mp-board-tests", "board", "-v", "-rs"]
    if xdist:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-p", "no:randomly", *args, "-n", "2"
        )
    else:
        result = run(pytester, *args)
    rp2, legacy = "rp2@mpmock://rp2", "microbit@mpmock://legacy"
    result.assert_outcomes(passed=8, failed=1, skipped=1)
    out = result.stdout.str()

    def shown(nodeid: str, outcome: str) -> bool:  # "-v" alone, and under xdist
        return f"{nodeid} {outcome}" in out or f"{outcome} {nodeid}" in out

    for label in (rp2, legacy):
        for nodeid in ("out.py::out.py", "unit.py::test_func", "unit.py::TestM::test_class"):
            assert shown(f"board/{nodeid}[{label}]", "PASSED"), (nodeid, label, out)
    assert shown(f"board/only_rp2.py::only_rp2.py[{rp2}]", "PASSED"), out
    assert shown(f"board/only_rp2.py::only_rp2.py[{legacy}]", "SKIPPED"), out
    # each item ran on the board its id names
    assert shown(f"board/unit.py::test_on_rp2[{rp2}]", "PASSED"), out
    assert shown(f"board/unit.py::test_on_rp2[{legacy}]", "FAILED"), out
    assert "AssertionError: microbit" in out
    assert f"mpsession: {rp2}: 5 passed" in out
    assert f"mpsession: {legacy}: 3 passed, 1 failed, 1 skipped" in out


def test_mp_dist_load_keeps_one_item_per_board_test(pytester: pytest.Pytester) -> None:
    """Without the matrix a board test stays one item, run on a board that can run it."""
    folder = pytester.mkdir("board")
    (folder / "out.py").write_text("print(6 * 7)\n")
    (folder / "out.py.exp").write_text("42\n")
    (folder / "only_rp2.py").write_text('requires_platform = ("rp2",)\nprint("rp2")\n')
    (folder / "only_rp2.py.exp").write_text("rp2\n")
    result = run(pytester, "--mp-port=mpmock://legacy", "--mp-port=mpmock://rp2",
                 "--mp-board-tests", "board", "-v")  # fmt: skip
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*board/only_rp2.py::only_rp2.py PASSED*"])


def test_mp_dist_each_board_tests_select_and_rerun_per_board(pytester: pytest.Pytester) -> None:
    """``-k`` picks one board's copies by the label in their ids, and ``--lf`` reruns only
    the copy that failed (on its board)."""
    folder = pytester.mkdir("board")
    (folder / "unit.py").write_text(MATRIX_UNIT)
    args = ["--mp-port=mpmock://rp2", "--mp-port=mpmock://legacy", "--mp-dist=each",
            "--mp-board-tests", "board", "-p", "no:randomly", "-v"]  # fmt: skip
    picked = pytester.runpytest(*args, "-k", "legacy and not test_on_rp2")
    picked.assert_outcomes(passed=2, deselected=4)
    first = pytester.runpytest(*args)
    first.assert_outcomes(passed=5, failed=1)
    again = pytester.runpytest(*args, "--lf")
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(
        ["*run-last-failure: rerun previous 1 failure*",
         "*unit.py::test_on_rp2[[]microbit@mpmock://legacy[]] FAILED*"]
    )  # fmt: skip


COUNT_AHEAD = """\
from pytest_mpsession.communicator import Communicator

SENT = []
CLAIMED = []
_run_ahead = Communicator.run_ahead
_checked = Communicator._checked


def run_ahead(self, code, timeout=None):
    sent = _run_ahead(self, code, timeout)
    if sent:
        SENT.append(code)
    return sent


def checked(self, code, *args, **kwargs):
    if kwargs.get("ahead") is not None:
        CLAIMED.append(code)
    return _checked(self, code, *args, **kwargs)


Communicator.run_ahead = run_ahead
Communicator._checked = checked


def pytest_unconfigure(config):
    Communicator.run_ahead = _run_ahead  # pytester runs in this process
    Communicator._checked = _checked
    with open("ahead.txt", "w") as f:
        f.write(repr((len(SENT), len(CLAIMED))))
"""


def _ahead_counts(pytester: pytest.Pytester) -> tuple[int, int]:
    import ast

    sent, claimed = ast.literal_eval((pytester.path / "ahead.txt").read_text())
    return int(sent), int(claimed)


def _output_files(folder: object, names: list[str], bad: str = "") -> None:
    from pathlib import Path

    assert isinstance(folder, Path)
    for name in names:
        (folder / f"{name}.py").write_text(f"x = '{name}'\nprint(x, len(x))\n")
        want = f"{name} {len(name)}\n" if name != bad else "something else\n"
        (folder / f"{name}.py.exp").write_text(want)


@pytest.mark.parametrize("board", ["mock", "unix"])
def test_the_next_output_test_runs_while_pytest_reports(
    pytester: pytest.Pytester, board: str
) -> None:
    """Each output test after the first starts on the board as the one before it ends (the
    board works while pytest reports): every one of them is claimed by its own run, and the
    verdicts are what they are without it (one wrong output among them fails alone)."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "b", "c", "d", "e"], bad="c")
    pytester.makeconftest(COUNT_AHEAD)
    if board == "mock":
        result = run(pytester, "--mp-mock", "--mp-board-tests", "board", "-v")
    else:
        with PtyBoard("unix") as pty:
            result = run(pytester, f"--mp-port={pty.path}", "--mp-board-tests", "board", "-v")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*c.py*FAILED*"])
    assert _ahead_counts(pytester) == (4, 4)


SESSION_HOOK = """
def pytest_mpsession_session_start(session):
    session.exec("hook_ran = 1")
"""

SKIP_B = """
import pytest


def pytest_runtest_setup(item):
    if item.name.startswith("b"):
        pytest.skip("skipped by the conftest")
"""


@pytest.mark.parametrize(
    "case", ["-x", "--maxfail=3", "--sw", "--mp-reset=soft", "session hook", "marker"]
)
def test_nothing_goes_ahead_when_something_may_come_between(
    pytester: pytest.Pytester, case: str
) -> None:
    """Nothing starts early when the next test may not run at all or not right after this
    one: a run that stops at failures, a reset after each test, a hook of the user's taking
    each test's session, a requirement marker whose check may skip it."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "b", "c"])
    conftest = COUNT_AHEAD
    args = ["--mp-mock", "--mp-board-tests", "board"]
    if case == "session hook":
        conftest += SESSION_HOOK
    elif case == "marker":
        for name in "abc":
            path = folder / f"{name}.py"
            path.write_text("requires_feature = ('float',)\n" + path.read_text())
    else:
        args.append(case)
    pytester.makeconftest(conftest)
    # (--sw keeps its place in pytest's cache)
    pytester.runpytest("-p", "no:randomly", *args).assert_outcomes(passed=3)
    assert _ahead_counts(pytester) == (0, 0)


def test_a_test_sent_ahead_and_then_skipped_leaves_the_next_one_right(
    pytester: pytest.Pytester,
) -> None:
    """A test started early that a hook of the user's then skips: its reply is never read,
    and the test after it runs and is judged on its own (its code is stopped first)."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "c"])
    (folder / "b.py").write_text("x = 1\nwhile x:\n    pass\n")  # never ends
    (folder / "b.py.exp").write_text("")
    pytester.makeconftest(COUNT_AHEAD + SKIP_B)
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board", "--mp-timeout", "5", "-v")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*c.py*PASSED*"])
    assert _ahead_counts(pytester) == (1, 0)  # b, never claimed (c comes after a skip)


FAILING_AHEAD = """
from pytest_mpsession.boardtests.runner import BoardRunner

_original = BoardRunner.run_output_ahead


def broken(self, source, timeout, **kwargs):
    raise RuntimeError("the board would not take it")


BoardRunner.run_output_ahead = broken


def pytest_unconfigure(config):
    BoardRunner.run_output_ahead = _original  # pytester runs in this process
"""


def test_a_failure_to_start_the_next_test_is_not_this_tests(pytester: pytest.Pytester) -> None:
    """Starting the next test early is the plugin's business: when it fails, the test that
    tried passes all the same, and the next one runs as it would have."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a", "b", "c"], bad="c")
    pytester.makeconftest(FAILING_AHEAD)
    result = run(pytester, "--mp-mock", "--mp-board-tests", "board", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*a.py*PASSED*", "*b.py*PASSED*", "*c.py*FAILED*"])


INTERRUPT_AFTER_A = """
def pytest_runtest_logreport(report):
    if report.when == "call" and report.nodeid.endswith("a.py"):
        raise KeyboardInterrupt
"""


def test_ctrl_c_stops_the_test_sent_ahead(pytester: pytest.Pytester) -> None:
    """Ctrl-C while pytest reports the test before: the run ends interrupted, and the next
    test's code, started early, does not go on running on the board after it."""
    folder = pytester.mkdir("board")
    _output_files(folder, ["a"])
    (folder / "b.py").write_text("x = 1\nwhile x:\n    pass\n")
    (folder / "b.py.exp").write_text("")
    pytester.makeconftest(COUNT_AHEAD + INTERRUPT_AFTER_A)
    with PtyBoard("unix") as pty:
        result = pytester.runpytest_subprocess(
            "-p", "no:randomly", f"--mp-port={pty.path}", "--mp-board-tests", "board"
        )
        assert result.ret == pytest.ExitCode.INTERRUPTED
        assert _ahead_counts(pytester) == (1, 0)
        import serial

        with serial.serial_for_url(pty.path, timeout=5) as port:
            port.write(b"\x01")  # answered at the raw-REPL prompt, not by a spinning board
            assert b"raw REPL" in port.read_until(b"raw REPL")
