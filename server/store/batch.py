"""Concurrent calls sharing one MongoDB round trip.

After a restart every channel is seeded at once, each seed a few store operations, and the
pool's 32 connections each carry one operation at a time: a hundred channels' seeds queued for
seconds behind one another while reconnecting subscribers waited for them
(docs/benchmarks.md, the eighth round). Operations that take many channels in one command
(`$in` reads, `insert_many`, `bulk_write`) go through a Batch instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batch(Generic[T, R]):
    """The first call runs at once; calls made while a batch is in flight go together in the
    next. `run` gets the items of a batch and returns their results in the same order; if it
    raises, every call of the batch raises the same."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        self._run = run
        self._next: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)  # a caller cancelled meanwhile leaves it unread
        self._next.append((item, done))
        if self._running is None:
            self._running = asyncio.ensure_future(self._drain())
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._next:
                batch, self._next = self._next, []
                try:
                    results = await self._run([item for item, _ in batch])
                except asyncio.CancelledError:
                    for _, done in batch + self._next:
                        done.cancel()
                    raise
                except Exception as exc:  # each caller raises it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(result)
        finally:
            self._running = None


def _retrieved(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()
