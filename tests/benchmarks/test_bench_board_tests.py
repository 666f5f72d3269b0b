"""MicroPython's ``tests/basics`` through the plugin vs ``run-tests.py``, on the same board.

The board is the real unix port on a PTY with a board's line ends (see
``tests/test_board_tests_basics.py``). Both runners get every expected output from ``.exp``
files, so CPython is in neither figure: a copy of MicroPython's ``tests/`` tree in a
temporary folder gets an ``.exp`` with CPython's output (as run-tests.py computes it) for
every file without one. The plugin's run is timed once with one board, and once with two
boards and ``-n 2``. Nothing here asserts a time (a loaded CI machine makes timed
assertions flaky): the figures are in ``extra_info`` and the README. In the test suite it
runs on every fourth file (the suite runs all of them in ``test_board_tests_basics.py``
already); the README's figures are of all of them, the median of three rounds (each round
runs the three commands one after the other, so a burst of load on the shared machine hits
all three alike)::

    MPS_BENCH_BASICS=all MPS_BENCH_ROUNDS=3 python -m pytest \
        tests/benchmarks/test_bench_board_tests.py -p no:xdist -s

pytest runs without the plugins of this project's test environment that have nothing to do
with the run (``randomly``, ``cacheprovider``, hypothesis's, which imports all of hypothesis,
0.2 to 0.6 s, in every process: three of them with ``-n 2``, and labgrid's, which the
``[labgrid]`` extra installs and which imports labgrid's target and driver modules, 0.3 s
with bytecode and 1.1 s without, in every process).

Every command (both plugin runs and run-tests.py) runs with Python's bytecode written, as on
a user's machine or CI, in a folder of the benchmark's own (``PYTHONPYCACHEPREFIX``), filled
by an untimed run of each first: where the environment forbids bytecode
(``PYTHONDONTWRITEBYTECODE``, as on the project's build machine) each process would compile
the plugin (and pytest rewrite it) from source, about 0.3 s per process, which an xdist run
pays three times (the controller and two workers) and run-tests.py once.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

ROOT = Path(__file__).resolve().parent.parent.parent
MP = ROOT.parent / "shared" / "micropython"
NEEDS_UNITTEST = ("array_int_repr.py", "array_limits_intbig.py", "fun_code_lnotab.py")

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not (MP / "tests" / "basics").is_dir(), reason=f"no {MP}"),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of MicroPython's tests tree with an .exp for every basics file."""
    dest = tmp_path_factory.mktemp("mp") / "micropython"
    shutil.copytree(MP, dest)
    basics = dest / "tests" / "basics"
    _subset(basics)
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    for path in sorted(basics.glob("*.py")):
        exp = Path(str(path) + ".exp")
        if exp.exists() or path.name in NEEDS_UNITTEST:
            continue
        proc = subprocess.run(
            [sys.executable, "-BS", str(path)], cwd=basics, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
        exp.write_bytes(proc.stdout if proc.returncode == 0 else b"CPYTHON3 CRASH:\n" + proc.stdout)
    for name in NEEDS_UNITTEST:  # run-tests.py would stop at them (no unittest on the board)
        (basics / name).unlink(missing_ok=True)
    return dest


def _subset(basics: Path) -> None:
    """Every fourth file, unless ``MPS_BENCH_BASICS=all``."""
    if os.environ.get("MPS_BENCH_BASICS") == "all":
        return
    for i, path in enumerate(sorted(basics.glob("*.py"))):
        if i % 4:
            path.unlink()
            Path(str(path) + ".exp").unlink(missing_ok=True)


@dataclass
class _Board:
    path: str


@pytest.fixture(scope="module")
def boards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[_Board]]:
    """Two boards, each served by an emulator process of its own (a board's relay thread in
    this process would share its interpreter lock with the other board's)."""
    folder = tmp_path_factory.mktemp("boards")
    profiles = folder / "profiles.toml"
    profiles.write_text('[unix-crlf]\nbase = "unix"\ncrlf = true\n')
    procs: list[subprocess.Popen[str]] = []
    out: list[_Board] = []
    try:
        for i in range(2):
            proc = subprocess.Popen(
                [sys.executable, "-m", "pytest_mpsession.emulator", "--pty", str(folder / f"b{i}"),
                 "--profile", "unix-crlf", "-o", f"profiles={profiles}"],
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            procs.append(proc)
            assert proc.stderr is not None
            ready = proc.stderr.readline()  # "unix-crlf board on /dev/pts/N (link ...)"
            assert " board on " in ready, ready
            out.append(_Board(ready.split(" board on ", 1)[1].split()[0]))
        yield out
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
            if proc.stderr is not None:
                proc.stderr.close()


#: the environment of every timed command (see the module): set by :func:`bytecode`
ENV: dict[str, str] = {}


@pytest.fixture(scope="module")
def bytecode(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The commands' environment: bytecode written, to a folder of the benchmark's own."""
    env = {k: v for k, v in os.environ.items() if k not in ("MP_PORT", "MP_MOCK")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    ENV.clear()
    ENV.update(env)


def _timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=ENV or None, capture_output=True, text=True,
                          check=False)  # fmt: skip
    elapsed = time.perf_counter() - start
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    return elapsed


def test_basics_plugin_vs_run_tests(
    benchmark: BenchmarkFixture, tree: Path, boards: list[_Board], tmp_path: Path, bytecode: None
) -> None:
    tests = tree / "tests"
    basics = tests / "basics"
    files = len(list(basics.glob("*.py")))
    env_free = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                "-p", "no:hypothesispytest", "-p", "no:labgrid"]  # fmt: skip
    commands = {
        "run_tests": (
            [sys.executable, "run-tests.py", "-t", f"port:{boards[0].path}", "-d", "basics",
             "-r", str(tmp_path / "results")],
            tests,
        ),
        "plugin": (
            [*env_free, f"--mp-port={boards[0].path}", f"--mp-board-tests={basics}"], tmp_path
        ),
        "plugin_two": (
            [*env_free, f"--mp-port={boards[0].path}", f"--mp-port={boards[1].path}", "-n", "2",
             f"--mp-board-tests={basics}"],
            tmp_path,
        ),
    }  # fmt: skip
    # pytest-xdist's own floor, beside them: as many trivial host tests, in one process and
    # with -n 2 (no board, the same plugins)
    host = tmp_path / "host"
    host.mkdir()
    (host / "pytest.ini").write_text("[pytest]\n")
    trivial = f"@pytest.mark.parametrize('n', range({files}))\ndef test_x(n):\n    pass\n"
    (host / "test_host.py").write_text("import pytest\n\n" + trivial)
    commands["host_one"] = ([*env_free], host)
    commands["host_two"] = ([*env_free, "-n", "2"], host)
    # untimed: each command once on a few files, so every process below finds its bytecode
    few = sorted(basics.glob("*.py"))[:3]
    for name, (cmd, cwd) in commands.items():
        if name == "run_tests":
            _timed([*cmd, *(f"basics/{p.name}" for p in few)], cwd)
        elif name.startswith("plugin"):
            rest = [a for a in cmd if a != f"--mp-board-tests={basics}"]
            _timed([*rest, *(f"--mp-board-tests={p}" for p in few)], cwd)
    rounds = max(1, int(os.environ.get("MPS_BENCH_ROUNDS", "1")))
    load_start = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (cmd, cwd) in commands.items():
            times[name].append(_timed(cmd, cwd))
    run_tests, plugin_one, plugin_two, host_one, host_two = (
        statistics.median(times[n]) for n in commands
    )
    benchmark.extra_info.update(
        files=files,
        rounds=rounds,
        run_tests_s=round(run_tests, 2),
        plugin_s=round(plugin_one, 2),
        plugin_two_boards_s=round(plugin_two, 2),
        run_tests_ms_per_file=round(run_tests / files * 1000, 1),
        plugin_ms_per_file=round(plugin_one / files * 1000, 1),
        speedup=round(run_tests / plugin_one, 1),
        two_board_speedup=round(plugin_one / plugin_two, 2),
        host_one_process_s=round(host_one, 2),
        host_n2_s=round(host_two, 2),
        xdist_floor_speedup=round(host_one / host_two, 2),
        all_s={name: [round(t, 2) for t in ts] for name, ts in times.items()},
        load=(round(load_start, 2), round(os.getloadavg()[0], 2)),
    )
    sys.stdout.write(f"\nboard tests benchmark: {benchmark.extra_info}\n")
    # pytest-benchmark's own figure: one plugin run of a tenth of the files
    some = sorted(basics.glob("*.py"))[: files // 10]
    benchmark.pedantic(
        _timed,
        args=([*env_free, f"--mp-port={boards[0].path}", *[f"--mp-board-tests={p}" for p in some]],
              tmp_path),
        rounds=1, iterations=1,
    )  # fmt: skip
