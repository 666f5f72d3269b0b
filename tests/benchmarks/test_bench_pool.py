"""A pool of boards under pytest-xdist: one board against two boards with ``-n 2``.

Target (the pool issue): 40 tests that each keep the board busy 50 ms run, with two boards
and ``-n 2``, in at most 75% of the time they take on one board.  The time of a suite is
taken from the tests' own log (first start to last end), so pytest's and xdist's start-up
are not counted.  Nothing here asserts the time (a timed assertion on a loaded CI machine is
a flaky test): ``extra_info`` has both times and their ratio, and ``report.py`` judges the
target.  What is deterministic is asserted: every test passed, on the boards and workers
expected, with the pool in the report header and the JUnit properties::

    python -m pytest tests/benchmarks/test_bench_pool.py -p no:xdist
    python tests/benchmarks/report.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(300)

POOL_TESTS = """
import os, time
import pytest

@pytest.mark.parametrize("n", range(40))
def test_work(device_session, n):
    start = time.monotonic()
    device_session.exec("import time\\ntime.sleep_ms(50)")
    with open(os.environ["MPS_LOG"], "a") as f:
        f.write("%s %f %f %s\\n" % (os.environ.get("PYTEST_XDIST_WORKER", "-"), start,
                                    time.monotonic(), device_session.manager.port))
"""
POOL_SIZE = 40
#: the environment variables of the outer run an inner run must not see
OUTER_ENV = ("MP_PORT", "MP_MOCK", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")


@dataclass
class SuiteRun:
    """One inner pytest run of ``POOL_TESTS``: its output, exit code and what its log says:
    the suite's time (first test start to last test end), the workers and ports used."""

    stdout: str
    returncode: int
    seconds: float
    workers: set[str]
    ports: set[str]


def write_pool_project(workdir: Path) -> None:
    """The inner project: the 40 board tests, and an ini that makes ``workdir`` its root."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pytest.ini").write_text("[pytest]\n")
    (workdir / "test_pool.py").write_text(POOL_TESTS)


def run_suite(workdir: Path, name: str, ports: list[str], *args: str) -> SuiteRun:
    """Run the pool project in ``workdir`` on ``ports`` (``args`` added, e.g. ``-n 2``)."""
    log = workdir / f"{name}.log"
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in OUTER_ENV}
    # the inner runs need no hypothesis plugin (its summary costs a second per run)
    env.update(MPS_LOG=str(log), PYTEST_ADDOPTS="-p no:hypothesispytest")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
         *[f"--mp-port={p}" for p in ports], *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    rows = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    seconds = max(float(r[2]) for r in rows) - min(float(r[1]) for r in rows) if rows else 0.0
    return SuiteRun(
        stdout=proc.stdout + proc.stderr,
        returncode=proc.returncode,
        seconds=seconds,
        workers={r[0] for r in rows},
        ports={r[3] for r in rows},
    )


def passed(run: SuiteRun) -> int:
    """How many tests the run's summary line says passed."""
    found = re.findall(r"(\d+) passed", run.stdout)
    return int(found[-1]) if found else 0


def measure_pool(workdir: Path, a: str, b: str) -> dict[str, float]:
    """The pool suite on board ``a`` alone, then on ``a`` and ``b`` with ``-n 2``:
    ``one_s``, ``two_s`` and ``ratio`` (two / one)."""
    write_pool_project(workdir)
    one = run_suite(workdir, "one", [a])
    two = run_suite(workdir, "two", [a, b], "-n", "2")
    for run in (one, two):
        if passed(run) != POOL_SIZE:
            raise RuntimeError(f"the pool suite did not pass:\n{run.stdout}")
    return {"one_s": one.seconds, "two_s": two.seconds, "ratio": two.seconds / one.seconds}


@pytest.mark.benchmark(group="pool: 40 tests x 50 ms on the board")
def test_xdist_pool_one_board_per_worker(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    write_pool_project(tmp_path)
    with PtyBoard("generic") as a, PtyBoard("generic") as b:
        one = run_suite(tmp_path, "one", [a.path])
        # pytest-benchmark times the whole two-board run (with xdist's start-up) once
        two = benchmark.pedantic(  # type: ignore[no-untyped-call]
            run_suite,
            args=(tmp_path, "two", [a.path, b.path], "-n", "2", "--junitxml=pool.xml"),
            rounds=1,
            iterations=1,
        )
    benchmark.extra_info.update(
        one_board_s=one.seconds, two_boards_s=two.seconds, ratio=two.seconds / one.seconds
    )
    assert one.returncode == 0 and passed(one) == POOL_SIZE, one.stdout
    assert two.returncode == 0 and passed(two) == POOL_SIZE, two.stdout
    assert one.ports == {a.path}
    assert two.workers == {"gw0", "gw1"}
    assert two.ports == {a.path, b.path}
    assert f"mpsession: a pool of 2 boards, one per pytest-xdist worker: {a.path}, {b.path}" in (
        two.stdout
    ), two.stdout
    assert re.search(r"mpsession: gw0: micropython .* on generic at ", two.stdout), two.stdout
    root = ET.parse(tmp_path / "pool.xml").getroot()
    props = [(p.get("name"), p.get("value")) for p in root.iter("property")]
    workers = [value for name, value in props if name == "mpsession_worker"]
    ports = [value for name, value in props if name == "mpsession_port"]
    assert (workers, ports) == (["gw0", "gw1"], [a.path, b.path])
