"""Memory: regressions in RAM use are bugs on a board with a few hundred KB (or 16 KB).

``device_capabilities.memory_free`` is what the board had free when it was probed; the
tests measure around their own code with ``gc.mem_free()``.
"""

from __future__ import annotations

import pytest


def test_the_board_reports_free_memory(device_capabilities):
    assert device_capabilities.memory_free is not None
    assert device_capabilities.memory_free > 4096


def test_a_buffer_costs_what_it_holds(device_session):
    used = device_session.exec(
        """
import gc
gc.collect()
before = gc.mem_free()
buf = bytearray(512)
print(before - gc.mem_free())
"""
    )
    assert 512 <= int(used) < 512 + 128


def test_no_leak_over_many_calls(device_session):
    # The firmware's hot path, as the firmware defines it.
    device_session.exec(
        """
def handle(message):
    fields = message.split(",")
    return sum(int(f) for f in fields)
"""
    )
    # Measured on the board in one go: after a collection, the heap is back where it was.
    leaked = device_session.exec(
        """
import gc

def burst():
    for _ in range(200):
        handle("1,2,3,4")

burst()  # warm up: what the first calls allocate once is not a leak
gc.collect()
start = gc.mem_free()
burst()  # a one-off block the collector still sees as reachable (a stale pointer on the
gc.collect()  # stack, a grown dict) shows here once; a leak grows with every burst
middle = gc.mem_free()
for _ in range(5):
    burst()
gc.collect()
print(start - middle, middle - gc.mem_free())
"""
    )
    once, growth = (int(n) for n in leaked.split())
    assert growth < 256, f"{growth} bytes lost over 1,000 more calls (first burst: {once})"


def test_allocation_failure_is_a_memory_error(device_session, device_capabilities):
    from pytest_mpsession import DeviceError

    # Ask for more than the board has: the board says MemoryError, and stays usable.
    size = (device_capabilities.memory_free or 0) * 2 + 1024 * 1024
    with pytest.raises(DeviceError) as excinfo:
        device_session.exec(f"bytearray({size})")
    assert excinfo.value.exc_type == "MemoryError"
    assert device_session.eval("1 + 1") == 2


@pytest.mark.mp_reset("soft")  # leave nothing behind for the next test: a soft reset
def test_fragmenting_the_heap(device_session):
    device_session.exec("chunks = [bytearray(32) for _ in range(20)]\nchunks = chunks[:10]")
    assert device_session.eval("len(chunks)") == 10
