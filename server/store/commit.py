"""Group commit: the writes of a few milliseconds become one batch, each caller still waits.

The embedded server inserts about 1,000 documents a second one by one and about 19,000 in one
insert_many, so durable publishing is batched: `enqueue` gives a future done once the batch
holding the item is written, or holding the batch's error (or the item's own, when the write
refused only some items).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from server.store.base import Refused

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Gathers items for `window_s` (and while a batch is being written), then writes them."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Refused]],
        window_s: float,
        max_batch: int = 2000,
    ) -> None:
        self._write = write
        self._window_s = window_s
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def enqueue(self, item: T) -> asyncio.Future[None]:
        """Queue `item`; the future is done once it is written, or holds why it was not."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return fut

    async def flush(self) -> None:
        """Wait until everything submitted so far is written (or has failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(self._window_s)
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                refused = await self._write([item for item, _ in batch])
            except Exception as exc:  # every waiter of the batch gets the batch's error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                for i, (_, fut) in enumerate(batch):
                    if fut.done():
                        continue
                    error = refused.get(i)
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)
