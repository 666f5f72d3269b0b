"""``device_benchmark``: board code timed by the board's clock, through pytest-benchmark.

Each behaviour runs on the emulator (``mpmock://generic``), on the 16 KB MicroPython-1.9-era
``legacy`` board (no raw-paste) and on the real MicroPython unix port behind a PTY. The
emulated boards get a slow link (``latency_ms``) so that the board's figure and the round
trip cannot be confused: a 2 ms sleep on the board must read about 2 ms, with the link's
25 ms only in ``extra_info``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(180)

LATENCY_MS = 25

# Board code of the inner tests: 1.9-safe (``utime`` on old boards, ``time`` on new).
IMPORT_TIME = "try:\n import utime as time\nexcept ImportError:\n import time\n"

# A clock that wraps in every round: each round starts 500 us before the end of the tick
# period (as a board's ticks_us does every ~18 minutes at 2**30), with the board's own
# ticks_diff arithmetic for that period. Small: the legacy board has ~9 KB to compile it in.
WRAPPING_CLOCK = (
    IMPORT_TIME
    + """class W:
 def __init__(s,p):
  s.P=p
  s.n=0
  s.b=0
  s.u=time.ticks_us
  s.d=time.ticks_diff
 def ticks_us(s):
  s.n+=1
  if s.n%2:
   s.b=s.u()
   return s.P-500
  return (s.P-500+s.d(s.u(),s.b))%s.P
 def ticks_diff(s,a,b):
  return (a-b+s.P//2)%s.P-s.P//2
 def ticks_add(s,a,b):
  return (a+b)%s.P
"""
)

# ``install(W(period))`` as a benchmark's setup: patch the board's time module where it is
# a Python module (the emulator's 1.9 board), else replace the modules code imports (a
# built-in module cannot be changed).
INSTALL = """w=W({period})
try:
 time.ticks_us=w.ticks_us
 time.ticks_diff=w.ticks_diff
 time.ticks_add=w.ticks_add
except Exception:
 import sys
 sys.modules['utime']=sys.modules['time']=w
"""

# A board without ticks_us, made the same way.
NO_TICKS = (
    IMPORT_TIME
    + """import sys
try:
 del time.ticks_us
except Exception:
 sys.modules['utime'] = sys.modules['time'] = 0
"""
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MP_PORT", "MP_MOCK", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")


#: every board: the emulator (a current board and the legacy one), the real unix port, and the
#: real MicroPython 1.9.2 firmware of a BBC micro:bit in QEMU (16 KB, ~4 KB free in a session)
BOARDS = ["mock", "legacy", "unix", "microbit"]
#: the boards whose clock a test can replace (the micro:bit's firmware has no sys.modules and
#: a built-in utime)
FAKEABLE = ["mock", "legacy", "unix"]
PROFILES = {"mock": "generic", "legacy": "legacy", "microbit": "microbit"}


@pytest.fixture(params=BOARDS)
def board(request: pytest.FixtureRequest) -> Iterator[str]:
    """The ``--mp-port`` option of a board: an emulated one on a slow link, or the real unix
    port on a PTY."""
    if request.param == "unix":
        with PtyBoard("unix") as pty:
            yield f"--mp-port={pty.path}"
    else:
        yield f"--mp-port=mpmock://{PROFILES[request.param]}?latency_ms={LATENCY_MS}"


FEW_ROUNDS = ("--benchmark-min-rounds=5", "--benchmark-max-time=0.01")


def run(pytester: pytest.Pytester, board: str, *args: str) -> pytest.RunResult:
    # (a run whose benchmark failed has nothing to save: pytest-benchmark's warning about
    # that would only hide the failure)
    return pytester.runpytest(
        board, "-p", "no:cacheprovider", "-rs", "-W", "ignore:Not saving anything",
        *FEW_ROUNDS, *args,
    )  # fmt: skip


def only_benchmark(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert len(data["benchmarks"]) == 1, data["benchmarks"]
    bench: dict[str, Any] = data["benchmarks"][0]
    bench["machine_info"] = data["machine_info"]
    return bench


def test_the_figures_are_the_boards_times_and_the_round_trip_is_apart(
    pytester: pytest.Pytester, board: str
) -> None:
    pytester.makepyfile(
        f"""
        SETUP = {IMPORT_TIME!r}

        def test_sleep(device_benchmark):
            out = device_benchmark("time.sleep_us(2000)\\nprint('slept')", setup=SETUP)
            assert out.rstrip() == "slept"  # (\\r\\n on old boards)
        """
    )
    result = run(pytester, board, "--benchmark-json=out.json", "-W", "error")
    result.assert_outcomes(passed=1)
    bench = only_benchmark(pytester.path / "out.json")
    stats, info = bench["stats"], bench["extra_info"]
    assert stats["rounds"] == 5 and len(stats["data"]) == 5
    # The board slept 2 ms each round: its clock says so (never less; a loaded host may
    # wake it a little late) ...
    assert all(0.0019 <= d < 0.1 for d in stats["data"]), stats["data"]
    # ... and each round trip, link included, took longer than the board's figure.
    assert info["round_trip_min_s"] > stats["min"]
    assert info["round_trip_median_s"] > stats["median"]
    assert info["round_trip_min_s"] <= info["round_trip_median_s"] <= info["round_trip_max_s"]
    if "latency_ms" in board:
        # the link's 25 ms is in the round trip, not in the figure
        assert info["round_trip_min_s"] >= LATENCY_MS / 1000
        assert stats["median"] < LATENCY_MS / 1000
    assert info["clock"] == "board time.ticks_us"
    assert bench["options"]["timer"] == "board_ticks_us"
    board_info = bench["machine_info"]["mpsession_board"]
    assert set(board_info) == {"implementation", "firmware", "platform", "machine", "port"}
    assert board_info["port"] == board.split("=", 1)[1] == info["board_port"]
    if "legacy" in board or "microbit" in board:
        assert (board_info["firmware"], board_info["platform"]) == ("1.9.2", "microbit")
    elif "generic" in board:
        assert board_info["platform"] == "generic"
    else:
        assert board_info["platform"] == "linux"
    assert info["board"].startswith(f"micropython {board_info['firmware']} on ")
    # pytest-benchmark's table shows the board's figures (microseconds: a ~2 ms median)
    table = result.stdout.str()
    assert "benchmark: 1 tests" in table and "test_sleep" in table


@pytest.mark.parametrize("board", FAKEABLE, indirect=True)
def test_correct_across_a_wrap_of_the_tick_counter(pytester: pytest.Pytester, board: str) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.mp_reset("soft")  # the fake clock must not outlive the test
        def test_wrap(device_session, device_benchmark):
            device_session.exec({WRAPPING_CLOCK!r})
            device_benchmark("time.sleep_us(2000)", setup={INSTALL.format(period="1 << 30")!r})
        """
    )
    result = run(pytester, board, "--benchmark-json=out.json")
    result.assert_outcomes(passed=1)
    data = only_benchmark(pytester.path / "out.json")["stats"]["data"]
    # every round crossed the wrap; ticks_diff gives the 2 ms, a subtraction would not
    assert all(0.0019 <= d < 0.1 for d in data), data


def test_autosave_compare_and_compare_fail(pytester: pytest.Pytester, board: str) -> None:
    test = """
        SETUP = {setup!r}

        def test_kernel(device_benchmark):
            device_benchmark("time.sleep_us({us})", setup=SETUP)
        """
    pytester.makepyfile(test_kernel=test.format(setup=IMPORT_TIME, us=2000))
    first = run(pytester, board, "--benchmark-autosave")
    first.assert_outcomes(passed=1)
    saved = sorted((pytester.path / ".benchmarks").glob("*/*.json"))
    assert len(saved) == 1
    data = json.loads(saved[0].read_text())
    assert data["machine_info"]["mpsession_board"]["port"] == board.split("=", 1)[1]
    # The same board and code: compared (same machine info: no warning, even as an error),
    # and no regression.
    same = run(
        pytester,
        board,
        "--benchmark-compare",
        "--benchmark-compare-fail=median:400%",
        "-W",
        "error",
    )
    same.assert_outcomes(passed=1)
    assert same.ret == 0, same.stdout.str()
    out = same.stdout.str() + same.stderr.str()
    assert "Comparing against benchmarks from" in out
    assert "test_kernel (0001" in out and "test_kernel (NOW)" in out
    assert "another board" not in out
    # The board code gets 6x slower: the comparison fails the run.
    pytester.makepyfile(test_kernel=test.format(setup=IMPORT_TIME, us=12000))
    slower = run(pytester, board, "--benchmark-compare", "--benchmark-compare-fail=median:100%")
    assert slower.ret != 0
    assert "Performance has regressed" in slower.stdout.str() + slower.stderr.str()


def test_compare_with_a_run_on_other_firmware_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_kernel(device_benchmark):
            device_benchmark("x = sum(range(50))")
        """
    )
    # saved on a current board, compared on the real 1.9.2 micro:bit firmware
    run(pytester, "--mp-mock", "--benchmark-autosave").assert_outcomes(passed=1)
    other = run(pytester, "--mp-mock=microbit", "--benchmark-compare")
    other.assert_outcomes(passed=1)
    line = [x for x in other.outlines if "another board" in x]
    assert len(line) == 1, other.stdout.str()
    assert "firmware '1." in line[0] and "-> '1.9.2'" in line[0]
    assert "platform 'generic' -> 'microbit'" in line[0]
    assert "port 'mpmock://generic' -> 'mpmock://microbit'" in line[0]


def test_code_runs_for_the_rounds_and_once_when_disabled(
    pytester: pytest.Pytester, board: str
) -> None:
    pytester.makepyfile(
        """
        from pathlib import Path

        def test_count(device_benchmark):
            out = device_benchmark("n[0] += 1\\nprint(n[0])", setup="n = [0]")
            Path("runs.txt").write_text(out)
        """
    )
    enabled = run(pytester, board, "--benchmark-json=out.json")
    enabled.assert_outcomes(passed=1)
    rounds = only_benchmark(pytester.path / "out.json")["stats"]["rounds"]
    # the setup ran once; the code once to calibrate, then once per round
    assert int((pytester.path / "runs.txt").read_text()) == rounds + 1
    disabled = run(pytester, board, "--benchmark-disable")
    disabled.assert_outcomes(passed=1)
    assert (pytester.path / "runs.txt").read_text().rstrip() == "1"
    assert "benchmark: 1 tests" not in disabled.stdout.str()  # no table


BAD = """
import pytest

def test_not_a_str(device_benchmark):
    device_benchmark(42)

def test_setup_not_a_str(device_benchmark):
    device_benchmark("x = 1", setup=b"y = 2")

def test_empty(device_benchmark):
    device_benchmark("  \\n")

def test_setup_raises(device_benchmark):
    device_benchmark("x = 1", setup="y = 1\\nz = y // 0")

def test_code_raises(device_benchmark):
    device_benchmark('''x = 1
y = x + undefined_name''')

def test_code_syntax_error(device_benchmark):
    device_benchmark("x = (1,")

def test_code_hangs(device_benchmark):
    device_benchmark("while True:\\n pass")

def test_code_exits(device_benchmark):
    device_benchmark("raise SystemExit")

def test_twice(device_benchmark):
    device_benchmark("x = 1")
    device_benchmark("x = 2")

def test_still_fine_after_all_that(device_benchmark):
    assert device_benchmark("print(6 * 7)").rstrip() == "42"
"""

BAD_FAKES = """
@pytest.mark.mp_reset("soft")
def test_board_without_ticks(device_benchmark):
    device_benchmark("x = 1", setup=NO_TICKS)

@pytest.mark.mp_reset("soft")
def test_round_longer_than_half_the_tick_period(device_session, device_benchmark):
    device_session.exec(CLOCK)
    device_benchmark("time.sleep_us(5000)", setup=SETUP)

"""


def test_bad_input_gets_one_line_each(pytester: pytest.Pytester, board: str) -> None:
    fakes = board.split("//")[-1].split("?")[0] != "microbit"
    # a board whose tick period is 4 ms: a 5 ms round is more than ticks_diff can measure
    setup = INSTALL.format(period=4096)
    pytester.makepyfile(
        BAD
        + (BAD_FAKES if fakes else "")
        + f"\nCLOCK = {WRAPPING_CLOCK!r}\nSETUP = {setup!r}\nNO_TICKS = {NO_TICKS!r}\n"
    )
    result = run(pytester, board, "--mp-timeout=2")
    if fakes:
        result.assert_outcomes(passed=1, failed=10, skipped=1)
    else:
        result.assert_outcomes(passed=1, failed=9)
    out = result.stdout.str()
    expected = [
        "device_benchmark: the code must be a str of board source, not int",
        "device_benchmark: setup must be a str of board source or None, not bytes",
        "device_benchmark: the code is empty: give the board code to time",
        "DeviceError: ZeroDivisionError: divi",  # "divide by" / "division by" (1.9)
        " zero (in device_benchmark's setup)",
        "DeviceError: NameError: name 'undefined_name' is",  # "isn't" / "is not" (1.9)
        "DeviceError: SyntaxError: invalid syntax",
        "DeviceTimeout",
        "device_benchmark: the round ended before the board printed its time (did the code "
        "raise SystemExit?); it printed ''",
        "device_benchmark: called twice in one test; pytest-benchmark records one benchmark "
        "per test (parametrize the test to time several pieces of code)",
    ]
    if fakes:
        expected += [
            "device_benchmark: the board has no time.ticks_us/ticks_diff (micropython ",
            "(round trip), longer than half the board's tick period (2.0 ms): "
            "time.ticks_diff cannot measure it",
        ]
    for line in expected:
        assert line in out, line
    # The board's traceback points at the test's own lines: the code's line 2 is line 17 of
    # the test file (not shifted by the timing prologue); the setup's frames are not mapped
    # onto the code's literal.
    assert 'File "test_bad_input_gets_one_line_each.py", line 17' in out
    assert 'File "<setup>", line 2' in out
    assert "benchmark.py" not in out  # no plugin frames in the reports


@pytest.mark.parametrize("profile", ["legacy", "microbit"])
def test_hundreds_of_rounds_fit_in_a_16_kb_board(pytester: pytest.Pytester, profile: str) -> None:
    # Each round compiles its code on the board; without a collection after each round the
    # legacy board's heap is too fragmented for the next compile within a few rounds.
    pytester.makepyfile(
        """
        def test_many(device_benchmark):
            assert device_benchmark("print(sum(range(1000)))").rstrip() == "499500"
        """
    )
    result = pytester.runpytest(
        f"--mp-mock={profile}", "-p", "no:cacheprovider", "--benchmark-min-rounds=300",
        "--benchmark-max-time=0", "--benchmark-json=out.json",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    assert only_benchmark(pytester.path / "out.json")["stats"]["rounds"] == 300


def test_the_tests_benchmark_marker_and_benchmark_only_apply(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.benchmark(group="kernels", min_rounds=7)
        def test_marked(device_benchmark):
            device_benchmark("x = 1")

        def test_not_a_benchmark():
            pass
        """
    )
    result = pytester.runpytest(
        "--mp-mock", "-p", "no:cacheprovider", "--benchmark-only", "--benchmark-max-time=0",
        "--benchmark-json=out.json", "-W", "error",
    )  # fmt: skip
    result.assert_outcomes(passed=1, skipped=1)  # --benchmark-only: the plain test skips
    bench = only_benchmark(pytester.path / "out.json")
    assert bench["group"] == "kernels" and bench["stats"]["rounds"] == 7
    assert bench["options"]["timer"] == "board_ticks_us"


def test_under_xdist_each_benchmark_runs_once(pytester: pytest.Pytester) -> None:
    # pytest-benchmark switches benchmarks off in xdist workers: each runs once, as a test
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_count(device_benchmark, i):
            assert device_benchmark("n[0] += 1\\nprint(n[0])", setup="n = [0]") == "1\\n"
        """
    )
    result = pytester.runpytest_subprocess("--mp-mock", "-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=4)


def test_a_failure_before_the_benchmark_is_the_only_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_fails_first(device_session, device_benchmark):
            device_session.exec("1 / 0")
            device_benchmark("x = 1")

        def test_never_benchmarks(device_benchmark):
            pass
        """
    )
    result = pytester.runpytest("--mp-mock", "-p", "no:cacheprovider", "-W", "error")
    # the first test's failure is its one report; a test that passes without using its
    # benchmark still gets pytest-benchmark's warning (as with its own fixture)
    result.assert_outcomes(failed=1, passed=1, errors=1)
    out = result.stdout.str()
    assert "ERROR at teardown of test_never_benchmarks" in out
    assert "ERROR at teardown of test_fails_first" not in out


def test_host_benchmarks_in_the_same_run_keep_the_host_clock(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_host(benchmark):
            benchmark(sum, range(100))

        def test_board(device_benchmark):
            device_benchmark("x = sum(range(100))")
        """
    )
    result = pytester.runpytest(
        "--mp-mock", "-p", "no:cacheprovider", "--benchmark-max-time=0.01",
        "--benchmark-json=out.json", "-W", "error",
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    data = json.loads((pytester.path / "out.json").read_text())
    timers = {b["name"]: b["options"]["timer"] for b in data["benchmarks"]}
    assert timers == {"test_host": "perf_counter", "test_board": "board_ticks_us"}
    host = next(b for b in data["benchmarks"] if b["name"] == "test_host")
    assert "clock" not in host["extra_info"]  # nothing of the board's on a host benchmark
    assert data["machine_info"]["mpsession_board"]["platform"] == "generic"
