"""server.waits.woken: a loop stopped by cancel() stops even when woken in the same turn,
which `asyncio.wait_for` on Python 3.11 got wrong (a CI run hung in a shutdown)."""

from __future__ import annotations

import asyncio

import pytest

from server.waits import woken


async def _wake_loop(event: asyncio.Event, turns: list[int]) -> None:
    while True:
        await woken(event, 10.0)
        event.clear()
        turns.append(1)


@pytest.mark.asyncio
async def test_a_cancellation_in_the_turn_the_event_is_set_stops_the_waiter() -> None:
    event, turns = asyncio.Event(), list[int]()
    task = asyncio.ensure_future(_wake_loop(event, turns))
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()  # the same turn
    await asyncio.sleep(0.05)
    assert task.cancelled()
    assert not turns  # it did not go round as if only woken


@pytest.mark.asyncio
async def test_it_returns_when_set_or_when_the_time_is_up() -> None:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await woken(event, 0.05)
    assert loop.time() - began >= 0.04  # the timer, not the event
    loop.call_later(0.01, event.set)
    await woken(event, 10.0)
    assert event.is_set()
