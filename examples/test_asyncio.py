"""asyncio on the board: tasks, gathering, timeouts and events."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.requires_feature("asyncio")


def test_gather_returns_in_call_order_whatever_finishes_first(device_session):
    out = device_session.exec(
        """
import asyncio

finished = []

async def sensor(name, delay_ms, value):
    await asyncio.sleep_ms(delay_ms)
    finished.append(name)
    return value

async def main():
    return await asyncio.gather(sensor("slow", 40, 1), sensor("fast", 5, 2))

print(asyncio.run(main()), finished)
"""
    )
    assert out == "[1, 2] ['fast', 'slow']\n"


def test_wait_for_times_out(device_session):
    out = device_session.exec(
        """
import asyncio

async def never_answers():
    await asyncio.sleep(10)

async def main():
    try:
        await asyncio.wait_for(never_answers(), 0.05)
    except asyncio.TimeoutError:
        return "timed out"

print(asyncio.run(main()))
"""
    )
    assert out == "timed out\n"


def test_event_hands_over_between_tasks(device_session):
    out = device_session.exec(
        """
import asyncio

async def producer(event, box):
    await asyncio.sleep_ms(10)
    box.append(42)
    event.set()

async def consumer(event, box):
    await event.wait()
    return box[0]

async def main():
    event, box = asyncio.Event(), []
    asyncio.create_task(producer(event, box))
    return await consumer(event, box)

print(asyncio.run(main()))
"""
    )
    assert out == "42\n"
