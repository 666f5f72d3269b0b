"""Board farms: a routed pool against one board, labgrid places against direct ports, and
what a pool costs at start-up.

Targets (the farms issue):

- 40 tests of 200 ms on two boards with ``-n 2`` (the routing scheduler, boards of two
  profiles): at most 0.65 of the wall time of the same tests on one board;
- the same two-board run through labgrid places: within 10% of it on the same boards
  reached directly (as PTYs, and through ser2net started by hand, which is what labgrid's
  exporter runs);
- the cost of ``-n N`` with a pool, beyond xdist's own start-up: under 0.5 s per worker.

Wall times are whole ``pytest`` processes (start-up included; bytecode cached, as on a
user's machine: see :func:`warm_bytecode`); the suite time is the tests' own log, first
start to last end. Beside the two-board run, the same 40 tests with no board, in one process
and with ``-n 2``, give xdist's own ratio: the floor a pool can approach, not pass. Nothing
here asserts a time (a timed assertion on a loaded CI machine is a flaky test):
``extra_info`` has the figures and ratios, and the README has a run's. What is
deterministic is asserted: every test passed, where expected::

    python -m pytest tests/benchmarks/test_bench_farm.py -p no:xdist -s
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

pytestmark = pytest.mark.timeout(900)

SUITE = """
import os, time
import pytest

@pytest.mark.parametrize("n", range(40))
def test_work(device_session, n):
    start = time.monotonic()
    device_session.exec("import time\\ntime.sleep_ms(200)")
    with open(os.environ["MPS_LOG"], "a") as f:
        f.write("%f %f %s\\n" % (start, time.monotonic(), device_session.manager.port))
"""
#: the same suite with no board: what pytest-xdist alone makes of 40 tests of 200 ms (the
#: floor of the two-board ratio: a pool cannot start faster than xdist's workers)
HOST_SUITE = """
import os, time
import pytest

@pytest.mark.parametrize("n", range(40))
def test_work(n):
    start = time.monotonic()
    time.sleep(0.2)
    with open(os.environ["MPS_LOG"], "a") as f:
        f.write("%f %f host\\n" % (start, time.monotonic()))
"""
TRIVIAL = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_quick({fixture}n):
    pass
"""
#: the environment variables of the outer run an inner run must not see
OUTER_ENV = ("MP_PORT", "MP_MOCK", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")


@dataclass
class Run:
    """One inner pytest process: wall time, suite time (from the tests' log), ports used."""

    wall_s: float
    suite_s: float
    ports: set[str]
    passed: bool
    output: str


#: where the inner runs keep their bytecode (see :func:`warm_bytecode`)
PYCACHE: dict[str, str] = {}


def inner_env(log: Path | None = None) -> dict[str, str]:
    """The environment of an inner run: none of the outer run's, bytecode cached."""
    full = {k: v for k, v in os.environ.items() if k not in OUTER_ENV}
    full["PYTEST_ADDOPTS"] = "-p no:hypothesispytest -p no:labgrid"
    if log is not None:
        full["MPS_LOG"] = str(log)
    if PYCACHE:
        full.pop("PYTHONDONTWRITEBYTECODE", None)
        full["PYTHONPYCACHEPREFIX"] = PYCACHE["dir"]
    return full


@pytest.fixture(scope="module", autouse=True)
def warm_bytecode(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Python writes bytecode on a user's machine; where the environment forbids it
    (``PYTHONDONTWRITEBYTECODE``, as on the project's build machine) every process would
    compile the plugin, and pytest rewrite it, from source: about 0.3 s per process, paid
    twice over by an xdist run (controller, then workers) and so not what a user sees. The
    inner runs keep their bytecode in a directory of their own, filled before timing."""
    PYCACHE["dir"] = str(tmp_path_factory.mktemp("pycache"))
    warm = project(tmp_path_factory.mktemp("warm"), TRIVIAL.format(fixture="device_session, "))
    ports = ["--mp-port=mpmock://generic", "--mp-port=mpmock://esp32"]
    for args in (ports, [*ports, "-n", "2"]):
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", *args],
            cwd=warm, env=inner_env(), capture_output=True, timeout=300,
        )  # fmt: skip
    code = "import importlib.util as u\nif u.find_spec('labgrid'): import labgrid.remote.client"
    subprocess.run([sys.executable, "-c", code], env=inner_env(), timeout=300)


def run(workdir: Path, name: str, args: list[str], env: dict[str, str] | None = None) -> Run:
    log = workdir / f"{name}.log"
    log.unlink(missing_ok=True)
    full = inner_env(log)
    full.update(env or {})
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=workdir, env=full, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    wall = time.monotonic() - start
    rows = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    suite = max(float(r[1]) for r in rows) - min(float(r[0]) for r in rows) if rows else 0.0
    return Run(wall, suite, {r[2] for r in rows}, proc.returncode == 0, proc.stdout + proc.stderr)


def project(workdir: Path, source: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pytest.ini").write_text("[pytest]\n")
    (workdir / "test_suite.py").write_text(source)
    return workdir


@pytest.mark.benchmark(group="farm: 40 tests x 200 ms, two boards vs one")
def test_routed_pool_against_one_board(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    """One board, two boards with ``-n 2``, and the same tests with no board in one process
    and with ``-n 2``, alternated for two rounds: each one's fastest run (the one the other
    jobs of the machine disturbed least)."""
    pytest.importorskip("xdist")
    work = project(tmp_path / "boards", SUITE)
    host = project(tmp_path / "host", HOST_SUITE)
    two_args = ["--mp-port=mpmock://generic", "--mp-port=mpmock://esp32", "-n", "2"]
    runs: dict[str, list[Run]] = {"one": [], "two": [], "host_one": [], "host_two": []}

    def rounds() -> None:
        for _ in range(2):
            runs["one"].append(run(work, "one", ["--mp-port=mpmock://generic"]))
            runs["two"].append(run(work, "two", two_args))
            runs["host_one"].append(run(host, "one", []))
            runs["host_two"].append(run(host, "two", ["-n", "2"]))

    benchmark.pedantic(rounds, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    for r in (r for rs in runs.values() for r in rs):
        assert r.passed and "40 passed" in r.output, r.output
    assert all("mpsession: generic@mpmock://generic:" in r.output for r in runs["two"])
    one, two, host_one, host_two = (min(runs[k], key=lambda r: r.wall_s) for k in runs)
    benchmark.extra_info.update(
        one_board_wall_s=one.wall_s,
        two_boards_wall_s=two.wall_s,
        wall_ratio=two.wall_s / one.wall_s,
        one_board_suite_s=one.suite_s,
        two_boards_suite_s=two.suite_s,
        suite_ratio=two.suite_s / one.suite_s,
        host_one_process_wall_s=host_one.wall_s,
        host_n2_wall_s=host_two.wall_s,
        xdist_floor_ratio=host_two.wall_s / host_one.wall_s,
        all_walls_s={k: [round(r.wall_s, 2) for r in v] for k, v in runs.items()},
    )
    print(f"\nfarm: one board {one.wall_s:.2f} s, two boards -n 2 {two.wall_s:.2f} s "
          f"(ratio {two.wall_s / one.wall_s:.2f}; suite {one.suite_s:.2f} s vs "
          f"{two.suite_s:.2f} s); the same tests with no board: one process "
          f"{host_one.wall_s:.2f} s, -n 2 {host_two.wall_s:.2f} s "
          f"(xdist's own ratio {host_two.wall_s / host_one.wall_s:.2f})")  # fmt: skip


@pytest.mark.benchmark(group="farm: pool start-up")
def test_pool_start_up_cost_per_worker(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    """``-n 2`` with a pool of two boards against ``-n 2`` with no board (host tests),
    alternated for five rounds: the median difference, per worker."""
    pytest.importorskip("xdist")
    pool = project(tmp_path / "pool", TRIVIAL.format(fixture="device_session, "))
    bare = project(tmp_path / "bare", TRIVIAL.format(fixture=""))
    pool_args = ["--mp-port=mpmock://generic", "--mp-port=mpmock://rp2", "-n", "2"]
    with_pool: list[float] = []
    without: list[float] = []

    def rounds() -> None:
        for _ in range(5):
            a = run(bare, "bare", ["-n", "2"])
            b = run(pool, "pool", pool_args)
            assert a.passed and b.passed, a.output + b.output
            without.append(a.wall_s)
            with_pool.append(b.wall_s)

    benchmark.pedantic(rounds, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    per_worker = statistics.median(b - a for a, b in zip(without, with_pool, strict=True)) / 2
    benchmark.extra_info.update(
        xdist_alone_s=statistics.median(without),
        with_pool_s=statistics.median(with_pool),
        pool_cost_per_worker_s=per_worker,
    )
    alone, pooled = statistics.median(without), statistics.median(with_pool)
    print(f"\nfarm: -n 2 alone {alone:.2f} s, with a pool of two boards {pooled:.2f} s: "
          f"{per_worker:.2f} s per worker")  # fmt: skip


def ser2net_rfc2217(device: str, exe: str) -> tuple[subprocess.Popen[bytes], str]:
    """ser2net serving ``device`` over RFC 2217 on loopback, configured as labgrid's exporter
    configures it; (process, ``rfc2217://...?ign_set_control`` URL)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "-d", "-n",
         "-Y", f"connection: &con01#  accepter: telnet(rfc2217,mode=server),tcp,127.0.0.1,{port}",
         "-Y", f"  connector: serialdev(nouucplock=true),{device},115200n81,local",
         "-Y", "  options:", "-Y", "    max-connections: 10"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # ser2net is up once it accepts a connection (blocking connects with a deadline)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("ser2net did not start") from None
            time.sleep(0.05)  # ok: waiting for another program's listening socket
    return proc, f"rfc2217://127.0.0.1:{port}?ign_set_control"


@pytest.mark.benchmark(group="farm: labgrid places vs direct ports")
def test_labgrid_places_against_direct_ports(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    """The two-board ``-n 2`` run on the lab's boards three ways: as PTYs, through ser2net
    started by hand (RFC 2217, what a lab without labgrid uses), and as labgrid places (whose
    exporter runs the same ser2net), alternated for two rounds: each way's fastest run."""
    pytest.importorskip("xdist")
    pytest.importorskip("labgrid", reason="pip install 'pytest-mpsession[labgrid]'")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from labgrid_lab import SER2NET, Lab

    from pytest_mpsession.farm.labgrid import acquire_places, parse_url, release_places

    if SER2NET is None:
        pytest.skip("ser2net is not installed")
    work = project(tmp_path / "suite", SUITE)
    (tmp_path / "lab").mkdir()
    lab = Lab(tmp_path / "lab")
    try:
        devices = [lab.boards[0].path, os.path.realpath(tmp_path / "lab" / "esp32-link")]
        runs: dict[str, list[Run]] = {"pty": [], "rfc": [], "lab": []}
        lab_args = ["--mp-port=labgrid://unix", "--mp-port=labgrid://esp32", "-n2"]

        def rounds() -> None:
            for _ in range(2):
                runs["pty"].append(run(work, "pty", [f"--mp-port={p}" for p in devices] + ["-n2"]))
                servers = [ser2net_rfc2217(d, SER2NET) for d in devices]
                try:
                    urls = [f"--mp-port={url}" for _, url in servers]
                    runs["rfc"].append(run(work, "rfc", [*urls, "-n2"]))
                finally:
                    for proc, _ in servers:
                        proc.terminate()
                        proc.wait(10)
                env = {"LG_COORDINATOR": lab.address}
                runs["lab"].append(run(work, "lab", lab_args, env=env))
                assert lab.wait_free() == {"unix": (None, None), "esp32": (None, None)}

        benchmark.pedantic(rounds, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
        # where labgrid's share goes: importing its client (a fresh process), and reserving
        # and acquiring the two places (the exporter starts a ser2net for each)
        code = "import time; t = time.monotonic(); import labgrid.remote.client; "
        code += "print(time.monotonic() - t)"
        imported = subprocess.run(
            [sys.executable, "-c", code],
            env=inner_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        import_s = float(imported.stdout.strip())
        acquire_s: list[float] = []
        for _ in range(3):
            start = time.monotonic()
            held = acquire_places(
                [parse_url("labgrid://unix"), parse_url("labgrid://esp32")],
                timeout=30,
                address=lab.address,
            )
            acquire_s.append(time.monotonic() - start)
            assert release_places(held) == []
            assert lab.wait_free() == {"unix": (None, None), "esp32": (None, None)}
    finally:
        lab.close()
    for r in (r for rs in runs.values() for r in rs):
        assert r.passed and "40 passed" in r.output, r.output
    assert all(p.startswith("rfc2217://127.0.0.1:") for r in runs["lab"] for p in r.ports)
    # each way's fastest run: the one the machine's other jobs disturbed least
    pty, rfc, places = (min(runs[k], key=lambda r: r.wall_s) for k in ("pty", "rfc", "lab"))
    benchmark.extra_info.update(
        pty_wall_s=pty.wall_s,
        ser2net_wall_s=rfc.wall_s,
        labgrid_wall_s=places.wall_s,
        pty_suite_s=pty.suite_s,
        ser2net_suite_s=rfc.suite_s,
        labgrid_suite_s=places.suite_s,
        labgrid_vs_ser2net_wall=places.wall_s / rfc.wall_s,
        labgrid_vs_ser2net_suite=places.suite_s / rfc.suite_s,
        labgrid_vs_pty_wall=places.wall_s / pty.wall_s,
        labgrid_import_s=import_s,
        acquire_two_places_s=statistics.median(acquire_s),
        all_walls_s={k: [round(r.wall_s, 2) for r in v] for k, v in runs.items()},
    )
    print(f"\nfarm: PTYs {pty.wall_s:.2f} s (tests {pty.suite_s:.2f} s), ser2net by hand "
          f"{rfc.wall_s:.2f} s (tests {rfc.suite_s:.2f} s), labgrid places {places.wall_s:.2f} s "
          f"(tests {places.suite_s:.2f} s): labgrid / ser2net wall "
          f"{places.wall_s / rfc.wall_s:.2f}, "
          f"tests {places.suite_s / rfc.suite_s:.2f}; importing labgrid's client "
          f"{import_s:.2f} s, acquiring the two places "
          f"{statistics.median(acquire_s):.2f} s")  # fmt: skip
