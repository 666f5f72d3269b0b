"""Emulator speed: exec round trip through ``mpmock://`` against the bare unix port on a PTY,
raw-paste upload at a throttled line rate, board start and soft reset.

Run::

    python -m pytest tests/benchmarks/test_bench_emulator.py -p no:xdist \\
        --benchmark-columns=median,min,max,rounds
    python tests/benchmarks/report.py     # the same figures, with the targets, as one table

Nothing here asserts a speed (a timed assertion on a loaded CI machine is a flaky test): the
figures go to pytest-benchmark, the medians and ratios in ``extra_info``; the assertions
check only what is deterministic (the board answered, the code ran).  Targets, judged by
``report.py``: the ``mpmock://`` round trip within 1.5x of the bare port; raw-paste within
10% of the line time at 115200 baud; board start and soft reset medians under 50 ms.

The round trip is paired: the bare port (its PTY master, the smallest raw-REPL client on a
descriptor) and ``mpmock://`` (the same exchange through pyserial's ``read``/``in_waiting``,
as every client of it does) alternate round by round, so both see the same machine load.
Run the benchmarks alone (``-p no:xdist``, nothing else busy): a loaded machine stretches
the emulator's extra thread hop the most.
"""

from __future__ import annotations

import os
import select
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import serial
from pytest_benchmark.fixture import BenchmarkFixture

import pytest_mpsession.emulator  # noqa: F401  (registers mpmock://)
from pytest_mpsession.emulator import PtyBoard, find_engine
from pytest_mpsession.emulator.engine import Engine

pytestmark = pytest.mark.timeout(120)

ROUNDS = 400
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
SOFT_REBOOT = b"soft reboot\r\n" + RAW_BANNER
PASTE_BAUD = 115200
# ~4.2 KB of counted statements, the count printed at the end (a lost line would show)
PASTE_CODE = "n = 0\n" + ("n += 1  # " + "y" * 49 + "\n") * 70 + "print(n)\n"
PROFILES = ["unix", "generic", "legacy"]


def read_until(fd: int, ending: bytes, timeout: float = 5.0) -> bytes:
    """Read ``fd`` until the data ends with ``ending``; AssertionError with what came."""
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(ending):
        left = deadline - time.monotonic()
        assert left > 0, buf
        select.select([fd], [], [], left)
        try:
            buf += os.read(fd, 65536)
        except BlockingIOError:
            pass
    return buf


def fd_exec(fd: int) -> Callable[[], bytes]:
    """A raw-REPL exec of one line over a bare descriptor."""

    def run() -> bytes:
        os.write(fd, b"x = 1\x04")
        return read_until(fd, b"\x04>")

    return run


def serial_exec(port: serial.Serial) -> Callable[[], bytes]:
    """The same exchange through pyserial's API, as every client of ``mpmock://`` does."""

    def run() -> bytes:
        port.write(b"x = 1\x04")
        buf = b""
        while not buf.endswith(b"\x04>"):
            buf += port.read(max(1, port.in_waiting))
        return buf

    return run


@contextmanager
def round_trip_pair() -> Iterator[tuple[Callable[[], bytes], Callable[[], bytes]]]:
    """The one-line exchange on the bare unix port and on ``mpmock://generic``, both in the
    raw REPL: ``(bare, mpmock)``."""
    bare = Engine(find_engine(), [])
    try:
        port = serial.serial_for_url("mpmock://generic", timeout=5)
        try:
            read_until(bare.fd, b">>> ")
            os.write(bare.fd, b"\x01")
            read_until(bare.fd, RAW_BANNER)
            port.write(b"\r\x03\x01")
            read_until(port.fileno(), RAW_BANNER)
            yield fd_exec(bare.fd), serial_exec(port)
        finally:
            port.close()
    finally:
        bare.kill()


def paired_medians(
    first: Callable[[], object], second: Callable[[], object], rounds: int = ROUNDS * 2
) -> tuple[float, float, float]:
    """Median times of ``first`` and ``second`` run alternately (so both see the same machine
    load at every moment), and the median of their round-by-round ratio second/first."""
    for _ in range(20):
        first()
        second()
    t_first, t_second = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        first()
        t_first.append(time.perf_counter() - t)
        t = time.perf_counter()
        second()
        t_second.append(time.perf_counter() - t)
    ratio = statistics.median(b / a for a, b in zip(t_first, t_second, strict=True))
    return statistics.median(t_first), statistics.median(t_second), ratio


def measure_round_trip(rounds: int = ROUNDS * 2) -> dict[str, float]:
    """Paired round trips: ``bare_us``, ``mpmock_us`` and ``ratio`` (mpmock / bare)."""
    with round_trip_pair() as (bare_rt, mock_rt):
        bare, mock, ratio = paired_medians(bare_rt, mock_rt, rounds)
    return {"bare_us": bare * 1e6, "mpmock_us": mock * 1e6, "ratio": ratio}


@contextmanager
def raw_paste_uploader(baud: int = PASTE_BAUD) -> Iterator[Callable[[], tuple[float, bytes]]]:
    """An ``upload()`` of ``PASTE_CODE`` in raw-paste mode through ``mpmock://`` throttled to
    ``baud``, returning (seconds from the paste request to the prompt, the board's reply)."""
    port = serial.serial_for_url(f"mpmock://generic?baudrate={baud}", timeout=10)
    fd = port.fileno()
    try:
        port.write(b"\r\x03\x01")
        read_until(fd, RAW_BANNER)

        def read_exact(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                assert select.select([fd], [], [], 5)[0], buf
                buf += os.read(fd, n - len(buf))
            return buf

        def upload() -> tuple[float, bytes]:
            t = time.perf_counter()
            os.write(fd, b"\x05A\x01")
            assert read_exact(2) == b"R\x01"
            window = int.from_bytes(read_exact(2), "little")
            credit, i, data = window, 0, PASTE_CODE.encode()
            while i < len(data):
                # take every window increment (Ctrl-A) that came; wait for one if out of credit
                while credit == 0 or select.select([fd], [], [], 0)[0]:
                    assert read_exact(1) == b"\x01"
                    credit += window
                n = min(credit, len(data) - i)
                os.write(fd, data[i : i + n])
                i += n
                credit -= n
            os.write(fd, b"\x04")
            reply = read_until(fd, b"\x04>", 10)
            return time.perf_counter() - t, reply

        yield upload
    finally:
        port.close()


def paste_line_time(baud: int = PASTE_BAUD) -> float:
    """Seconds the paste request, the code and its end byte take on the wire at ``baud``
    (10 bits a byte)."""
    return (3 + len(PASTE_CODE) + 1) * 10 / baud


def measure_raw_paste(
    upload: Callable[[], tuple[float, bytes]], rounds: int = 3
) -> dict[str, float]:
    """Median upload time against the line time: ``elapsed_s``, ``line_s``, ``ratio``."""
    elapsed = statistics.median(upload()[0] for _ in range(rounds))
    line = paste_line_time()
    return {"elapsed_s": elapsed, "line_s": line, "ratio": elapsed / line}


def start_median(profile: str, rounds: int = 9) -> float:
    """Median seconds from ``PtyBoard(profile)`` to a booted board."""
    starts = []
    for _ in range(rounds):
        t = time.perf_counter()
        board = PtyBoard(profile)
        starts.append(time.perf_counter() - t)
        board.close()
    return statistics.median(starts)


@contextmanager
def reset_board(profile: str) -> Iterator[tuple[Callable[[], bytes], Callable[[float], None]]]:
    """A board of ``profile`` in the raw REPL: ``(soft_reset, work)``, where ``work(seconds)``
    exchanges with the board as a test does between resets."""
    with PtyBoard(profile) as board:
        port = serial.Serial(board.path, timeout=5)
        try:
            fd = port.fileno()
            port.write(b"\r\x03\x01")
            read_until(fd, RAW_BANNER)

            def soft_reset() -> bytes:
                os.write(fd, b"\x04")
                return read_until(fd, SOFT_REBOOT)

            def work(seconds: float) -> None:
                # a board's spare engine boots meanwhile, as it would while a real test runs
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    os.write(fd, b"x = 1\x04")
                    read_until(fd, b"\x04>")

            yield soft_reset, work
        finally:
            port.close()


def reset_medians(
    soft_reset: Callable[[], object], work: Callable[[float], None], rounds: int = 9
) -> tuple[float, float]:
    """Median soft reset seconds back to back, and after 50 ms of work each."""
    back_to_back, after_work = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        soft_reset()
        back_to_back.append(time.perf_counter() - t)
    for _ in range(rounds):
        work(0.05)
        t = time.perf_counter()
        soft_reset()
        after_work.append(time.perf_counter() - t)
    return statistics.median(back_to_back), statistics.median(after_work)


@pytest.mark.benchmark(group="emulator: one-line round trip")
def test_exec_round_trip_mpmock_and_bare_port(benchmark: BenchmarkFixture) -> None:
    with round_trip_pair() as (bare_rt, mock_rt):
        bare, mock, ratio = paired_medians(bare_rt, mock_rt)
        benchmark.extra_info.update(
            bare_us=bare * 1e6, mpmock_us=mock * 1e6, ratio_mpmock_over_bare=ratio
        )
        reply = benchmark(mock_rt)
        assert reply == b"OK\x04\x04>"
        assert bare_rt() == b"OK\x04\x04>"


@pytest.mark.benchmark(group="emulator: raw-paste at 115200")
def test_raw_paste_upload_at_line_rate(benchmark: BenchmarkFixture) -> None:
    with raw_paste_uploader() as upload:
        figures = measure_raw_paste(upload)
        benchmark.extra_info.update(figures)
        _, reply = benchmark.pedantic(  # type: ignore[no-untyped-call]
            upload, rounds=1, iterations=1
        )
    # the board acknowledged the end of the paste, ran every line, and printed the count
    assert reply.endswith(b"\x0470\r\n\x04\x04>") or reply.endswith(b"\x0470\n\x04\x04>"), reply


@pytest.mark.benchmark(group="emulator: soft reset")
@pytest.mark.parametrize("profile", PROFILES)
def test_board_start_and_soft_reset(profile: str, benchmark: BenchmarkFixture) -> None:
    start = start_median(profile)
    with reset_board(profile) as (soft_reset, work):
        back_to_back, after_work = reset_medians(soft_reset, work)
        benchmark.extra_info.update(
            start_ms=start * 1e3,
            soft_reset_ms=after_work * 1e3,
            soft_reset_back_to_back_ms=back_to_back * 1e3,
        )
        reply = benchmark.pedantic(  # type: ignore[no-untyped-call]
            soft_reset, rounds=3, iterations=1
        )
    assert reply.endswith(SOFT_REBOOT)


@contextmanager
def unconfined() -> Iterator[None]:
    """Boards started meanwhile run their engine without the kernel's confinement (for the
    comparison only: never a way to run boards)."""
    from pytest_mpsession.emulator import sandbox

    original = sandbox.policy
    sandbox.policy = lambda **_kw: {}
    try:
        yield
    finally:
        sandbox.policy = original


def paired_starts(profile: str, rounds: int = 15) -> tuple[float, float]:
    """Median board start, confined and not, alternating round by round (same load)."""
    confined_t, bare_t = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        PtyBoard(profile).close()
        confined_t.append(time.perf_counter() - t)
        with unconfined():
            t = time.perf_counter()
            PtyBoard(profile).close()
            bare_t.append(time.perf_counter() - t)
    return statistics.median(confined_t), statistics.median(bare_t)


@pytest.mark.benchmark(group="emulator: confinement")
@pytest.mark.parametrize("profile", ["unix", "generic"])
def test_confinement_cost_at_board_start(benchmark: BenchmarkFixture, profile: str) -> None:
    """Target: confinement adds under 10 ms to a board start (the median difference)."""
    confined, bare = paired_starts(profile)
    benchmark.extra_info.update(
        confined_ms=confined * 1e3, unconfined_ms=bare * 1e3, added_ms=(confined - bare) * 1e3
    )
    benchmark(lambda: PtyBoard(profile).close())


@pytest.mark.benchmark(group="emulator: confinement")
def test_confinement_cost_on_a_round_trip(benchmark: BenchmarkFixture) -> None:
    """Target: nothing measurable on a round trip (the exchange never enters the kernel's
    checks: the engine's reads and writes on its terminal are not filtered)."""
    port = serial.serial_for_url("mpmock://generic", timeout=5)
    with unconfined():
        bare_port = serial.serial_for_url("mpmock://generic", timeout=5)
    try:
        for p in (port, bare_port):
            p.write(b"\r\x03\x01")
            read_until(p.fileno(), RAW_BANNER)
        bare, confined, ratio = paired_medians(serial_exec(bare_port), serial_exec(port))
        benchmark.extra_info.update(
            confined_us=confined * 1e6, unconfined_us=bare * 1e6, ratio_confined_over_bare=ratio
        )
        assert benchmark(serial_exec(port)) == b"OK\x04\x04>"
    finally:
        port.close()
        bare_port.close()
