"""The channel directory: which channels have subscribers, on every process, for admins.

Each process knows only its own hub. While an admin looks (a query marks the directory as
wanted for WANTED_S), every process writes its channels and subscriber counts to Redis every
INTERVAL_S, under keys that expire on their own; a query merges them. When nobody looks,
nothing is written. Without Redis there is one process and its hub is the directory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio

from server.broker.redis_conn import ERRORS
from server.hub import Hub

#: A Redis client, of a single server or a cluster (`[redis] cluster`).
RedisClient = redis.asyncio.Redis | redis.asyncio.RedisCluster

log = logging.getLogger("switchboard.directory")

INTERVAL_S = 2.0
WANTED_S = 30.0
#: Channels one query returns at most.
MAX_LISTED = 500


class Directory:
    def __init__(
        self, hub: Hub[Any], node_id: str, client: RedisClient | None, prefix: str
    ) -> None:
        self._hub = hub
        self._node = node_id
        self._client = client
        base = f"{{{prefix}:admin}}"
        self._wanted = f"{base}:wanted"
        self._nodes = f"{base}:nodes"
        self._mine = f"{base}:dir:{node_id}"
        self._prefix = f"{base}:dir:"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._client is not None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def local(self) -> dict[str, int]:
        return {c: self._hub.subscriber_count(c) for c in self._hub.channels()}

    async def _run(self) -> None:
        assert self._client is not None
        while True:
            await asyncio.sleep(INTERVAL_S)
            try:
                if await self._client.exists(self._wanted):
                    await self._write(self._client)
            except ERRORS as exc:
                log.debug("directory not written: %s", exc)

    async def _write(self, client: RedisClient) -> None:
        counts = self.local()
        expiry_ms = int(INTERVAL_S * 3 * 1000)
        async with client.pipeline(transaction=False) as pipe:
            pipe.delete(self._mine)
            if counts:
                pipe.hset(self._mine, mapping=counts)  # type: ignore[arg-type]
                pipe.pexpire(self._mine, expiry_ms)
            pipe.zadd(self._nodes, {self._node: time.time() * 1000 + expiry_ms})
            await pipe.execute()

    async def channels(self, query: str = "", limit: int = MAX_LISTED) -> list[dict[str, Any]]:
        """Channels whose name contains `query`, busiest first: subscribers over all
        processes and how many processes have some."""
        merged: dict[str, list[int]] = {c: [n, 1] for c, n in self.local().items()}
        if self._client is not None:
            try:
                for counts in await self._others(self._client):
                    for channel, n in counts.items():
                        entry = merged.setdefault(channel.decode(), [0, 0])
                        entry[0] += int(n)
                        entry[1] += 1
            except ERRORS as exc:
                log.warning("directory read from this process only: %s", exc)
        q = query.lower()
        ranked = sorted(
            ((c, n, p) for c, (n, p) in merged.items() if q in c.lower()),
            key=lambda e: (-e[1], e[0]),
        )
        return [{"channel": c, "subscribers": n, "processes": p} for c, n, p in ranked[:limit]]

    async def _others(self, client: RedisClient) -> list[dict[bytes, bytes]]:
        now_ms = time.time() * 1000
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(self._wanted, b"1", px=int(WANTED_S * 1000))
            pipe.zremrangebyscore(self._nodes, "-inf", now_ms)
            pipe.zrange(self._nodes, 0, -1)
            _, _, nodes = await pipe.execute()
        others = [n.decode() for n in nodes if n.decode() != self._node]
        if not others:
            return []
        async with client.pipeline(transaction=False) as pipe:
            for node in others:
                pipe.hgetall(self._prefix + node)
            result: list[dict[bytes, bytes]] = await pipe.execute()
        return result
