"""Commands that arrive together leave together: one pipeline per loop turn instead of one
round trip each (measured here: about 10,700 publishes/s one by one, 49,000/s pipelined).

One pipeline is in flight at a time; whatever arrives meanwhile forms the next one. Commands go
out in the order they were given, so a process's publications keep their order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio

from server.broker.redis_conn import ERRORS, unavailable

Queued = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


class Batcher:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._queue: list[Queued] = []
        self._task: asyncio.Task[None] | None = None

    async def call(self, *args: Any) -> Any:
        """Run one command in the next pipeline; raises BrokerUnavailable on an outage."""
        return await self.submit(*args)

    def submit(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command for the next pipeline; its future holds the reply."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, fut))
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
        return fut

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
        finally:
            self._task = None

    async def _send(self, batch: list[Queued]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for args, _ in batch:
                    pipe.execute_command(*args)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # every caller hears of it; an outage reads `unavailable`
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(unavailable(exc) if isinstance(exc, ERRORS) else exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)
