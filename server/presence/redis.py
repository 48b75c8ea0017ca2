"""Presence in Redis, shared by every process; entries expire unless their process renews them.

A channel's presence is a hash `<prefix>:presence:{C}` (client id -> JSON info) and a sorted set
`<prefix>:presence-exp:{C}` (client id -> expiry, Redis time in ms). Each process renews its own
clients' entries every third of the expiry, so a process killed without cleaning up leaves no
client listed for longer than the expiry. Renewing re-adds entries too: after Redis lost its
data, presence comes back within one heartbeat.

Both keys of a channel carry its hash tag, so under Redis Cluster they share a slot (and the
channel's position and pub/sub): each script runs on one primary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import orjson
import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from server.broker.base import BrokerUnavailable
from server.broker.redis_batch import Batcher
from server.broker.redis_cluster import ClusterBatcher, Topology
from server.presence.base import Presence

log = logging.getLogger("switchboard.redis")

Info = dict[str, str | None]

_NOW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""

# ARGV: expiry in ms, then client id and info pairs.
ADD = (
    _NOW
    + """
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], now + ARGV[1], ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
"""
)

GET = (
    _NOW
    + """
for _, client in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HDEL', KEYS[1], client)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return redis.call('HGETALL', KEYS[1])
"""
)

REMOVE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
"""

#: Clients renewed per script call, so one call never blocks Redis for long.
RENEW_CHUNK = 500


class RedisPresence(Presence):
    def __init__(
        self, client: redis.asyncio.Redis | RedisCluster, prefix: str, ttl_s: float
    ) -> None:
        self._client = client
        # One connection (per primary) however many subscribe at once.
        self._batch: Batcher | ClusterBatcher = (
            ClusterBatcher(Topology(client))
            if isinstance(client, RedisCluster)
            else Batcher(client)
        )
        self._prefix = prefix
        self._ttl_ms = int(ttl_s * 1000)
        self._local: dict[str, dict[str, bytes]] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    def _keys(self, channel: str) -> tuple[str, str]:
        return (
            f"{self._prefix}:presence:{{{channel}}}",
            f"{self._prefix}:presence-exp:{{{channel}}}",
        )

    async def start(self) -> None:
        self._heartbeat = asyncio.ensure_future(self._beat())

    async def close(self) -> None:
        """Stop renewing; entries still listed expire (clients are gone by now).

        The Redis client is the broker's, which closes it after this.
        """
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        self._local.clear()

    async def add(self, channel: str, client_id: str, info: Info) -> None:
        encoded = orjson.dumps(info)
        self._local.setdefault(channel, {})[client_id] = encoded
        await self._run("EVAL", ADD, 2, *self._keys(channel), self._ttl_ms, client_id, encoded)

    async def remove(self, channel: str, client_id: str) -> None:
        clients = self._local.get(channel)
        if clients is not None:
            clients.pop(client_id, None)
            if not clients:
                del self._local[channel]
        await self._run("EVAL", REMOVE, 2, *self._keys(channel), client_id)

    async def get(self, channel: str) -> dict[str, Info]:
        flat = await self._run("EVAL", GET, 2, *self._keys(channel))
        return {flat[i].decode(): orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def _run(self, *args: str | bytes | int) -> Any:
        """One command in the next pipeline: a resubscribe storm never exhausts the pool."""
        return await self._batch.call(*args)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self._renew()
            except (BrokerUnavailable, redis.exceptions.RedisError) as exc:
                log.debug("presence not renewed: %s", exc)

    async def _renew(self) -> None:
        """Re-add every local client's entry with a fresh expiry, in one pipeline (per primary:
        a shard that is down holds back only its own channels' renewals)."""
        if not self._local:
            return
        replies: list[Awaitable[Any]] = []
        for channel, clients in self._local.items():
            pairs = [x for item in clients.items() for x in item]
            for i in range(0, len(pairs), RENEW_CHUNK * 2):
                replies.append(
                    self._batch.submit(
                        "EVAL",
                        ADD,
                        2,
                        *self._keys(channel),
                        self._ttl_ms,
                        *pairs[i : i + RENEW_CHUNK * 2],
                    )
                )
        for outcome in await asyncio.gather(*replies, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
