"""Exec speed: our Communicator against mpremote's ``SerialTransport``, side by side, on the
same real MicroPython unix port served as a board on a PTY (the ``unix_port`` fixture).

Run and compare::

    python -m pytest tests/benchmarks -p no:xdist --benchmark-group-by=group \\
        --benchmark-columns=median,min,max,rounds

mpremote is measured twice, because it has two read loops:

- ``mpremote``: the path it gives to ``/dev/pts/*`` devices (blocking one-byte reads);
- ``mpremote-serial-device``: the same PTY reached through a symlink, so mpremote takes the
  path it uses for every real board (``/dev/ttyACM0``, ``COM3``): polling ``in_waiting``
  with 10 ms sleeps.

``test_speed_targets`` checks the targets with its own timing, so it holds under any
pytest-benchmark options.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mpremote.transport_serial import SerialTransport
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_mpsession.communicator import Communicator
from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(120)

ONE_LINE = "x = 1"
# About 27 KB of code that must all arrive: 400 statements with comments.
PROGRAM_27K = ("x = 1\n# " + "y" * 60 + "\n") * 400
CLIENTS = ["mpsession", "mpremote", "mpremote-serial-device"]
Exec = Callable[[str], object]


def open_client(kind: str, port: str, tmp_path: Path) -> tuple[Exec, Callable[[], None]]:
    """An exec function on ``port`` for the client ``kind``, and how to close it."""
    if kind == "mpsession":
        comm = Communicator.open(port)
        return comm.exec, comm.close
    if kind == "mpremote-serial-device":
        link = tmp_path / "ttyBOARD"  # not /dev/pts/*: mpremote's real-device read loop
        link.symlink_to(port)
        port = str(link)
    transport = SerialTransport(port)
    transport.enter_raw_repl(soft_reset=False)  # a soft reset would end the unix port
    return transport.exec, transport.close


@pytest.fixture
def client(request: pytest.FixtureRequest, unix_port: str, tmp_path: Path) -> Iterator[Exec]:
    """The exec function of the client named by the test's ``client`` parameter."""
    exec_fn, close = open_client(request.param, unix_port, tmp_path)
    exec_fn("pass")
    yield exec_fn
    close()


@pytest.mark.benchmark(group="exec: one line")
@pytest.mark.parametrize("client", CLIENTS, indirect=True)
def test_exec_one_line(benchmark: BenchmarkFixture, client: Exec) -> None:
    # mpremote's polling loop takes ~10 ms a call: fewer rounds keep the suite quick.
    polling = "serial-device" in benchmark.name
    benchmark.pedantic(client, args=(ONE_LINE,), rounds=30 if polling else 300, warmup_rounds=3)


@pytest.mark.benchmark(group="exec: 27 KB program")
@pytest.mark.parametrize("client", CLIENTS, indirect=True)
def test_exec_27k_program(benchmark: BenchmarkFixture, client: Exec) -> None:
    assert len(PROGRAM_27K) >= 27_000
    benchmark.pedantic(client, args=(PROGRAM_27K,), rounds=8, warmup_rounds=1)


def test_speed_targets(pty_board_factory: Callable[..., PtyBoard], tmp_path: Path) -> None:
    """One-line exec at least 10x faster than mpremote on a serial device, and faster than
    mpremote's PTY path too; a 27 KB program no slower than either.

    Each client gets its own board and the rounds alternate between clients, so a busy
    machine (CI, xdist) slows them all alike.
    """
    clients: dict[str, tuple[Exec, Callable[[], None]]] = {}
    try:
        for kind in CLIENTS:
            board = pty_board_factory("unix")
            clients[kind] = open_client(kind, board.path, tmp_path)
        times: dict[tuple[str, str], list[float]] = {}
        ratios: dict[str, list[float]] = {}  # ours / mpremote's PTY path, round by round
        for what, code, rounds in (("one", ONE_LINE, 25), ("27k", PROGRAM_27K, 7)):
            for exec_fn, _ in clients.values():
                exec_fn(code)  # warm-up
            for _ in range(rounds):
                took: dict[str, float] = {}
                for kind, (exec_fn, _) in clients.items():
                    # the fast clients run several times per round, for a finer median
                    repeat = 1 if kind == "mpremote-serial-device" or what == "27k" else 8
                    for _ in range(repeat):
                        start = time.perf_counter()
                        exec_fn(code)
                        took[kind] = time.perf_counter() - start
                        times.setdefault((kind, what), []).append(took[kind])
                ratios.setdefault(what, []).append(took["mpsession"] / took["mpremote"])
    finally:
        for _, close in clients.values():
            close()
    medians = {key: statistics.median(values) for key, values in times.items()}
    ours_one, ours_27k = medians["mpsession", "one"], medians["mpsession", "27k"]
    report = ", ".join(f"{k}/{what}: {v * 1e3:.3f} ms" for (k, what), v in medians.items())
    assert ours_one * 10 <= medians["mpremote-serial-device", "one"], report
    assert ours_one <= medians["mpremote", "one"], report
    # Raw-paste is paced by the board's window increments for everyone, so the 27 KB times
    # are the board's: compared round by round (paired, so load on a busy machine cancels
    # out), no slower, with room for scheduling noise.
    assert statistics.median(ratios["27k"]) <= 1.15, report
    assert ours_27k <= medians["mpremote-serial-device", "27k"] * 1.25, report
