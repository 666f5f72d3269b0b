"""Threads on the board (``_thread``): skipped on boards built without them."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.requires_feature("threading")


def test_workers_share_a_counter_under_a_lock(device_session):
    out = device_session.exec(
        """
import _thread, time

lock = _thread.allocate_lock()
state = {"count": 0, "done": 0}

def worker(n):
    for _ in range(n):
        with lock:
            state["count"] += 1
    with lock:
        state["done"] += 1

for _ in range(4):
    _thread.start_new_thread(worker, (250,))
while state["done"] < 4:
    time.sleep_ms(5)
print(state["count"])
"""
    )
    assert out == "1000\n"


def test_background_thread_is_stopped_at_cleanup(device_session):
    # A sampler running beside the test; the session stops it when the test ends.
    def sampler(period_ms):
        import time

        while not mps_should_stop():  # noqa: F821 - provided on the board by the session
            samples.append(time.ticks_ms())  # noqa: F821
            time.sleep_ms(period_ms)

    device_session.exec("samples = []")
    thread = device_session.executor.start_thread(sampler, 10)
    device_session.exec("import time\nwhile len(samples) < 3:\n    time.sleep_ms(5)")
    assert thread.is_alive()
    assert device_session.eval("len(samples) >= 3")
