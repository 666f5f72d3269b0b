"""Many sessions on one board: 8 host threads x 100 sessions, and 10,000 create/cleanup
cycles with host and board memory flat. Run on the real MicroPython unix port (and the
generic emulator for the concurrency test)."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import Iterator

import pytest

from pytest_mpsession.emulator import PtyBoard
from pytest_mpsession.session import DeviceSessionManager, SessionState


@pytest.fixture(params=["unix", "generic"])
def shared_manager(request: pytest.FixtureRequest) -> Iterator[DeviceSessionManager]:
    """A manager on the bare unix port or the generic emulator."""
    with PtyBoard(request.param) as board:
        with DeviceSessionManager.connect(board.path, timeout=30.0) as manager:
            yield manager


@pytest.mark.timeout(300)
def test_eight_threads_hundred_sessions_each(shared_manager: DeviceSessionManager) -> None:
    manager = shared_manager
    transitions: list[tuple[SessionState, SessionState]] = []
    manager.add_listener("state_changed", lambda old, new: transitions.append((old, new)))
    failures: list[BaseException] = []
    answered = [0] * 8
    start = threading.Barrier(8)

    def worker(tid: int) -> None:
        try:
            start.wait()
            for i in range(100):
                mark = tid * 1000 + i
                with manager.create_session() as s:
                    # nothing left over from any earlier or concurrent session
                    assert not s.context.is_variable_defined("mark")
                    s.exec(f"mark = {mark}")
                    assert s.eval("mark") == mark
                    # a longer reply: interleaved bytes would garble it
                    text = f"<{tid}:{i}>" * 40
                    assert s.exec(f"print({text!r})").strip() == text
                    s.set_state("mark", mark)
                    assert s.get_state("mark") == mark
                    answered[tid] += 3
        except BaseException as exc:  # report every thread's failure, not just the first
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert answered == [300] * 8  # every call answered
    assert manager.sessions == []
    out = manager.communicator.exec("print(len(_mps_ns), len(_mps_th), len(_mps_sf))")
    assert out.split() == ["0", "0", "0"]  # no session left anything on the board
    assert manager.state is SessionState.CONNECTED
    # BUSY periods never overlapped: each BUSY is followed by its own return to CONNECTED
    busy = [t for t in transitions if SessionState.BUSY in t]
    assert all(
        a == (SessionState.CONNECTED, SessionState.BUSY)
        and b == (SessionState.BUSY, SessionState.CONNECTED)
        for a, b in zip(busy[::2], busy[1::2], strict=True)
    )


@pytest.mark.timeout(600)
def test_ten_thousand_cycles_memory_flat(unix_port: str) -> None:
    with DeviceSessionManager.connect(unix_port, timeout=30.0) as manager:

        def cycles(n: int) -> int:
            mem = 0
            for _ in range(n):
                s = manager.create_session()
                s.exec("x = 1")
                s.cleanup()
                assert s.board_mem_free is not None
                mem = s.board_mem_free
            return mem

        board_start = cycles(500)  # warm up: helpers installed, names interned, caches full
        gc.collect()
        tracemalloc.start()
        try:
            host_start = tracemalloc.get_traced_memory()[0]
            board_end = cycles(9500)
            gc.collect()
            host_end = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert manager.sessions == []
    # Host: flat (a leak of even 10 bytes a cycle would show as 95 KB).
    assert host_end - host_start < 32 * 1024, (host_start, host_end)
    # Board: free memory after the last cleanup is back at the baseline.
    # (give or take a few blocks held by the conservative GC's stale stack words; a leak of
    # a single byte a cycle would be 9.5 KB)
    assert board_end >= board_start - 256, (board_start, board_end)
