"""Emulator speed: exec round trip through ``mpmock://`` against the bare unix port on a PTY,
raw-paste upload at a throttled line rate, board start and soft reset.

Run::

    python -m pytest tests/benchmarks/test_bench_emulator.py -p no:xdist \\
        --benchmark-columns=median,min,max,rounds

The assertions use their own timing (medians over many rounds, all in one run, so the bare
port and the emulator see the same machine load); pytest-benchmark records the emulator's
round trip for comparison across runs.  The round trip is timed with one minimal raw-REPL
client on both descriptors (the bare port's PTY master, the ``mpmock://`` port's
``fileno()``), so the ratio is what the emulator adds; the same exchange through pyserial's
``read``/``in_waiting`` API is recorded beside it.  Run the benchmarks alone (``-p no:xdist``,
nothing else busy): a loaded machine stretches the emulator's extra thread hop the most.
"""

from __future__ import annotations

import os
import select
import statistics
import time
from collections.abc import Callable

import pytest
import serial
from pytest_benchmark.fixture import BenchmarkFixture

import pytest_mpsession.emulator  # noqa: F401  (registers mpmock://)
from pytest_mpsession.emulator import PtyBoard, find_engine
from pytest_mpsession.emulator.engine import Engine

pytestmark = pytest.mark.timeout(120)

ROUNDS = 400


def read_until(fd: int, ending: bytes, timeout: float = 5.0) -> bytes:
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
    """A raw-REPL exec of one line over a bare descriptor (the same client for both)."""

    def run() -> bytes:
        os.write(fd, b"x = 1\x04")
        return read_until(fd, b"\x04>")

    return run


def serial_exec(port: serial.SerialBase) -> Callable[[], bytes]:
    """The same exchange through pyserial's API, as every client of ``mpmock://`` does."""

    def run() -> bytes:
        port.write(b"x = 1\x04")
        buf = b""
        while not buf.endswith(b"\x04>"):
            buf += port.read(max(1, port.in_waiting))
        return buf

    return run


def median_time(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def test_exec_round_trip_mpmock_within_1_5x_of_bare_pty(benchmark: BenchmarkFixture) -> None:
    bare = Engine(find_engine(), [])
    port = serial.serial_for_url("mpmock://generic", timeout=5)
    try:
        read_until(bare.fd, b">>> ")
        os.write(bare.fd, b"\x01")
        read_until(bare.fd, b"raw REPL; CTRL-B to exit\r\n>")
        port.write(b"\r\x03\x01")
        read_until(port.fileno(), b"raw REPL; CTRL-B to exit\r\n>")
        # the same minimal client on both descriptors: what the emulator adds, not pyserial
        bare_rt, mock_rt = fd_exec(bare.fd), serial_exec(port)
        # alternated round by round, so both see the same machine load at every moment
        for _ in range(20):
            bare_rt()
            mock_rt()
        t_bare, t_mock = [], []
        for _ in range(ROUNDS * 2):
            t = time.perf_counter()
            bare_rt()
            t_bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            mock_rt()
            t_mock.append(time.perf_counter() - t)
        bare_med, mock_med = statistics.median(t_bare), statistics.median(t_mock)
        # for the record: the same exchange through pyserial's API (what clients use)
        api_med = median_time(serial_exec(port), ROUNDS)
        benchmark.extra_info.update(
            bare_us=bare_med * 1e6, mpmock_us=mock_med * 1e6, mpmock_pyserial_api_us=api_med * 1e6
        )
        benchmark(mock_rt)
        assert mock_med <= 1.5 * bare_med, (mock_med, bare_med)
    finally:
        port.close()
        bare.kill()


def test_raw_paste_upload_at_line_rate(benchmark: BenchmarkFixture) -> None:
    baud = 115200
    code = ("x = 1  # " + "y" * 50 + "\n") * 70  # ~4.2 KB
    port = serial.serial_for_url(f"mpmock://generic?baudrate={baud}", timeout=10)
    fd = port.fileno()
    try:
        port.write(b"\r\x03\x01")
        read_until(fd, b"raw REPL; CTRL-B to exit\r\n>")

        def read_exact(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                assert select.select([fd], [], [], 5)[0], buf
                buf += os.read(fd, n - len(buf))
            return buf

        def upload() -> float:
            t = time.perf_counter()
            os.write(fd, b"\x05A\x01")
            assert read_exact(2) == b"R\x01"
            window = int.from_bytes(read_exact(2), "little")
            credit, i, data = window, 0, code.encode()
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
            read_until(fd, b"\x04>", 10)
            return time.perf_counter() - t

        elapsed = statistics.median(upload() for _ in range(3))
        line_time = (3 + len(code) + 1) * 10 / baud
        benchmark.extra_info.update(elapsed_s=elapsed, line_s=line_time)
        benchmark.pedantic(upload, rounds=1, iterations=1)
        assert line_time * 0.97 <= elapsed <= line_time * 1.10, (elapsed, line_time)
    finally:
        port.close()


@pytest.mark.parametrize("profile", ["unix", "generic", "legacy"])
def test_board_start_and_soft_reset_under_50ms(profile: str, benchmark: BenchmarkFixture) -> None:
    starts = []
    for _ in range(9):
        t = time.perf_counter()
        board = PtyBoard(profile)
        starts.append(time.perf_counter() - t)
        board.close()
    with PtyBoard(profile) as board:
        port = serial.Serial(board.path, timeout=5)
        try:
            fd = port.fileno()
            port.write(b"\r\x03\x01")
            read_until(fd, b"raw REPL; CTRL-B to exit\r\n>")

            def soft_reset() -> None:
                os.write(fd, b"\x04")
                read_until(fd, b"soft reboot\r\nraw REPL; CTRL-B to exit\r\n>")

            def work(seconds: float) -> None:
                # what a test does between resets: exchanges with the board (a board's
                # spare engine boots meanwhile, as it would while a real test runs)
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    os.write(fd, b"x = 1\x04")
                    read_until(fd, b"\x04>")

            resets, back_to_back = [], []
            for _ in range(9):
                t = time.perf_counter()
                soft_reset()
                back_to_back.append(time.perf_counter() - t)
            for _ in range(9):
                work(0.05)
                t = time.perf_counter()
                soft_reset()
                resets.append(time.perf_counter() - t)
            benchmark.extra_info.update(
                start_ms=statistics.median(starts) * 1e3,
                soft_reset_ms=statistics.median(resets) * 1e3,
            )
            benchmark.pedantic(soft_reset, rounds=3, iterations=1)
        finally:
            port.close()
    assert statistics.median(starts) < 0.05, starts
    assert statistics.median(resets) < 0.05, resets
