"""Batch: concurrent calls share one round trip (server/store/batch.py)."""

from __future__ import annotations

import asyncio

import pytest

from server.store.base import StoreUnavailable
from server.store.batch import Batch


@pytest.mark.asyncio
async def test_calls_made_while_a_batch_is_in_flight_go_together_in_the_next() -> None:
    runs: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        runs.append(items)
        await release.wait()
        return [i * 10 for i in items]

    batch: Batch[int, int] = Batch(run)
    first = asyncio.ensure_future(batch(1))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batch(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    assert runs == [[1]]  # the first ran at once, alone
    release.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40]
    assert runs == [[1], [2, 3, 4]]
    assert await batch(5) == 50  # idle again: runs at once
    assert runs[-1] == [5]


@pytest.mark.asyncio
async def test_a_failed_batch_fails_each_of_its_calls_and_the_next_batch_runs() -> None:
    async def run(items: list[int]) -> list[int]:
        await asyncio.sleep(0)
        if 2 in items:
            raise StoreUnavailable("down")
        return items

    batch: Batch[int, int] = Batch(run)
    first = asyncio.ensure_future(batch(1))
    await asyncio.sleep(0)
    failing = [asyncio.ensure_future(batch(i)) for i in (2, 3)]
    assert await first == 1
    for call in failing:
        with pytest.raises(StoreUnavailable):
            await call
    assert await batch(4) == 4


@pytest.mark.asyncio
async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    release = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        await release.wait()
        return items

    batch: Batch[int, int] = Batch(run)
    gone = asyncio.ensure_future(batch(1))
    kept = asyncio.ensure_future(batch(2))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    assert await kept == 2
    with pytest.raises(asyncio.CancelledError):
        await gone
