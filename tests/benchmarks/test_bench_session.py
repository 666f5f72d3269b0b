"""Session create + cleanup: the host-side cost, and the board round trips it takes.

Target (issue 4): creating and cleaning up a session costs under 1 ms on the host, plus at
most one board round trip for a ``clean`` cleanup (none for a session that never reached
the board). ``benchmark`` gives the figures; each test also checks the target with its own
timing, so it holds under any pytest-benchmark options (``--benchmark-disable`` included)::

    python -m pytest tests/benchmarks/test_bench_session.py -p no:xdist \\
        --benchmark-columns=median,mean,min,rounds
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_mpsession.session import DeviceSessionManager
from pytest_mpsession.session.board import RESULT_MARKER

pytestmark = pytest.mark.timeout(120)

HOST_TARGET_S = 1e-3


class InstantBoard:
    """A communicator that answers at once without a board, so only host work is timed."""

    port = "instant://"
    raw_paste: bool | None = True

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset_count = 0
        self.exchanges = 0

    def exec(self, code: str | bytes, timeout: float | None = None, on_stdout: Any = None) -> str:
        self.exchanges += 1
        return f"{RESULT_MARKER}([], {{}}, 1000)\n"

    def interrupt(self, timeout: float | None = None) -> None:
        pass

    soft_reset = hard_reset = interrupt

    def add_reset_listener(self, callback: Callable[[], None]) -> None:
        pass

    def close(self) -> None:
        pass


def median_seconds(fn: Callable[[], object], rounds: int = 2000) -> float:
    """Our own timing of ``fn``: the median of ``rounds`` runs."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_bench_create_cleanup_untouched(benchmark: BenchmarkFixture) -> None:
    """A session that never reaches the board: pure host cost, no round trip."""
    board = InstantBoard()
    manager = DeviceSessionManager(board)

    def cycle() -> None:
        manager.create_session().cleanup()

    benchmark(cycle)
    assert board.exchanges == 0
    assert median_seconds(cycle) < HOST_TARGET_S


def test_bench_create_use_cleanup_host_side(benchmark: BenchmarkFixture) -> None:
    """Create, one exec, clean cleanup against a board that answers at once: the host-side
    cost of the whole cycle, and exactly one exchange for the cleanup."""
    board = InstantBoard()
    manager = DeviceSessionManager(board)
    manager.create_session().exec("warm = 1")  # installs the helpers once

    def cycle() -> None:
        s = manager.create_session()
        s.exec("x = 1")
        s.cleanup()

    benchmark(cycle)
    before = board.exchanges
    cycle()
    assert board.exchanges - before == 2  # the exec, and ONE for the clean cleanup
    assert median_seconds(cycle) < HOST_TARGET_S


@pytest.fixture
def unix_manager(unix_port: str) -> Iterator[DeviceSessionManager]:
    """A manager on the real MicroPython unix port."""
    with DeviceSessionManager.connect(unix_port) as manager:
        yield manager


def test_bench_clean_cycle_on_the_unix_port(
    benchmark: BenchmarkFixture, unix_manager: DeviceSessionManager
) -> None:
    """The same cycle on the real unix port: the cleanup is one round trip, and the cycle
    costs two round trips plus under 1 ms of host work."""
    manager = unix_manager
    manager.create_session().exec("warm = 1")

    def cycle() -> None:
        s = manager.create_session()
        s.exec("x = 1")
        s.cleanup()

    benchmark(cycle)
    s = manager.create_session()
    s.exec("x = 1")
    before = manager.exchange_count
    s.cleanup()
    assert manager.exchange_count - before == 1
    # one bare round trip on this board, to compare with
    comm = manager.communicator
    round_trip = median_seconds(lambda: comm.exec("x = 1"), rounds=300)
    per_cycle = median_seconds(cycle, rounds=300)
    assert per_cycle < 2 * round_trip + HOST_TARGET_S, (per_cycle, round_trip)
