"""The Redis broker: fan-out between processes, offsets sequenced in Redis.

Every Switchboard channel `C` has a Redis hash `<prefix>:pos:{C}` (offset, epoch) and a Redis
channel `<prefix>:ch:{C}` (the braces keep both in one Redis Cluster slot). One Lua script
numbers a batch of publications and publishes them, so the order on the wire is the offset
order. Messages carry their position in front of the body, `offset:epoch:body`, so receivers
build frames without decoding JSON; join/leave travels on the same Redis channel as
`j:client:frame`.

Given a RedisCluster client, the same broker runs over a Redis Cluster: commands are pipelined
per primary (redis_cluster.py), channels are subscribed on their slot's primary (redis_shards.py)
and positions are fenced by the node that wrote them (redis_fence.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, runtime_checkable

import orjson
import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from server.broker import redis_fence
from server.broker.base import Backlogged, Broker, BrokerHandler, BrokerUnavailable
from server.broker.redis_batch import Batcher
from server.broker.redis_cluster import ClusterBatcher, Topology
from server.broker.redis_pubsub import CLASSIC, SHARDED, PubSubLink
from server.broker.redis_shards import ShardLinks
from server.position import Position

log = logging.getLogger("switchboard.redis")

# KEYS: position. ARGV: the pub/sub channel, publish command, window, ttl in ms, then the
# bodies (redis_fence.SEQUENCE). Publishes as many of the bodies as the window allows, in order.
# Returns {first offset, epoch, how many}; {-1, epoch} when none fits the window (`window`
# offsets beyond what the store holds are handed out: channels with history); nil to be seeded.
PUBLISH = (
    """
local h = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'stored')
local epoch = h[1]
if not epoch then return false end
"""
    + redis_fence.SEQUENCE
)

# ARGV: offset, epoch, how far the store holds the channel (empty: no history), ttl in ms.
SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'epoch', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'stored', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# ARGV: offset, epoch. Raises how far the store holds the channel, within its epoch.
STORED = """
local h = redis.call('HMGET', KEYS[1], 'epoch', 'stored')
if h[1] == ARGV[2] and h[2] and tonumber(ARGV[1]) > tonumber(h[2]) then
  redis.call('HSET', KEYS[1], 'stored', ARGV[1])
end
"""

# Stores one process's figures for ARGV[1] ms and returns every live process's figures.
STATS = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
redis.call('ZADD', KEYS[1], now + ARGV[1], KEYS[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('MGET', unpack(redis.call('ZRANGE', KEYS[1], 0, -1)))
"""


@runtime_checkable
class StatsSource(Protocol):
    """A handler that can tell its figures: the node. Its heartbeat keeps them in Redis."""

    def process_stats(self) -> dict[str, Any]: ...


class RedisBroker(Broker):
    def __init__(
        self,
        client: redis.asyncio.Redis | RedisCluster,
        prefix: str,
        ttl_s: float,
        sharded: bool = True,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._dialect = SHARDED if sharded else CLASSIC
        self._control = f"{prefix}:control".encode()
        self._channel_head = len(self._redis_channel("")) - 1
        self._handler: BrokerHandler | None = None
        self._batch: Batcher | ClusterBatcher
        self._link: PubSubLink | ShardLinks
        self._cluster = isinstance(client, RedisCluster)
        if isinstance(client, RedisCluster):
            if not sharded:
                raise ValueError("a Redis Cluster needs sharded pub/sub")
            topology = Topology(client)
            self._batch = ClusterBatcher(topology)
            self._link = ShardLinks(topology, self._dialect, self._on_message, self._on_reconnected)
        else:
            self._batch = Batcher(client)
            self._link = PubSubLink(
                client.connection_pool, self._dialect, self._on_message, self._on_reconnected
            )
        self._heartbeat: asyncio.Task[None] | None = None
        self._stored: dict[str, Position] = {}  # reports not sent yet

    def _redis_channel(self, channel: str) -> bytes:
        return f"{self._prefix}:ch:{{{channel}".encode() + b"}"

    def _pos_key(self, channel: str) -> str:
        return f"{self._prefix}:pos:{{{channel}}}"

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        await self._link.start({self._control})
        self._heartbeat = asyncio.ensure_future(self._beat())

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        await self._link.close()
        await self._client.aclose()
        self._handler = None

    async def check(self) -> None:
        if self._link.down is not None:
            raise BrokerUnavailable(self._link.down)
        await self._call("PING")

    def _require_link(self, redis_channel: bytes) -> None:
        """Fail fast while the channel's pub/sub link is down: this process would not see the
        result (on a cluster, only the link of the channel's shard counts)."""
        down = self._link.down_for(redis_channel)
        if down is not None:
            raise BrokerUnavailable(down)

    async def _call(self, *args: Any) -> Any:
        return await self._batch.call(*args)

    # -- channels -----------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        await self._link.subscribe(self._redis_channel(channel))

    async def unsubscribe(self, channel: str) -> None:
        await self._link.unsubscribe(self._redis_channel(channel))

    async def publish(
        self, channel: str, body: bytes, window: int, ttl_s: float
    ) -> Position | None:
        got = await self.publish_many(channel, [body], window, ttl_s)
        return None if got is None else got[0]

    async def publish_many(
        self, channel: str, bodies: list[bytes], window: int, ttl_s: float
    ) -> list[Position] | None:
        """Publications of one channel in one script (one round trip), in order: as many as
        the unstored window allows. One script serves one publication and many alike."""
        redis_channel = self._redis_channel(channel)
        self._require_link(redis_channel)
        script = redis_fence.PUBLISH if self._cluster else PUBLISH
        res = await self._call(
            "EVAL",
            script,
            1,
            self._pos_key(channel),
            redis_channel,
            self._dialect.publish,
            window,
            int(ttl_s * 1000),
            *bodies,
        )
        if res is None:
            return None
        if res[0] == -1:
            raise Backlogged(f"{window} publications of {channel} are not stored yet")
        first, epoch, n = int(res[0]), res[1].decode(), int(res[2])
        return [Position(first + i, epoch) for i in range(n)]

    async def position(self, channel: str) -> Position | None:
        if self._cluster:
            found = await self._call("EVAL", redis_fence.POSITION, 1, self._pos_key(channel))
        else:
            found = await self._call("HMGET", self._pos_key(channel), "offset", "epoch")
        if not found or found[1] is None:
            return None
        return Position(int(found[0]), found[1].decode())

    async def seed(
        self, channel: str, position: Position, stored: int | None, ttl_s: float
    ) -> bool:
        set_it: int = await self._call(
            "EVAL",
            redis_fence.SEED if self._cluster else SEED,
            1,
            self._pos_key(channel),
            position.offset,
            position.epoch,
            "" if stored is None else stored,
            int(ttl_s * 1000),
        )
        return set_it == 1

    async def keep(self, channels: list[tuple[str, float]]) -> None:
        """One pipeline of expiries; a key that is gone stays gone (it is seeded on use)."""
        await asyncio.gather(
            *(self._batch.submit("PEXPIRE", self._pos_key(c), int(t * 1000)) for c, t in channels)
        )

    def stored(self, channel: str, position: Position) -> None:
        """Reports of one loop turn go out together, the newest per channel."""
        if not self._stored:
            asyncio.get_running_loop().call_soon(self._report_stored)
        known = self._stored.get(channel)
        if known is None or known.epoch != position.epoch or known.offset < position.offset:
            self._stored[channel] = position

    def _report_stored(self) -> None:
        reports, self._stored = self._stored, {}
        for channel, pos in reports.items():
            reply = self._batch.submit(
                "EVAL", STORED, 1, self._pos_key(channel), pos.offset, pos.epoch
            )
            reply.add_done_callback(_ignore_outage)

    async def publish_join_leave(self, channel: str, client_id: str, frame: bytes) -> None:
        redis_channel = self._redis_channel(channel)
        self._require_link(redis_channel)
        await self._call(
            self._dialect.publish, redis_channel, b"j:%s:%s" % (client_id.encode(), frame)
        )

    async def publish_control(self, message: bytes) -> None:
        self._require_link(self._control)
        await self._call(self._dialect.publish, self._control, message)

    # -- receiving ----------------------------------------------------------------------------

    def _on_message(self, redis_channel: bytes, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        if redis_channel == self._control:
            handler.on_control(data)
            return
        channel = redis_channel[self._channel_head : -1].decode()
        head, client_or_epoch, rest = data.split(b":", 2)
        if head == b"j":
            handler.on_join_leave(channel, client_or_epoch.decode(), rest)
        else:
            handler.on_publication(channel, int(head), client_or_epoch.decode(), rest)

    def _on_reconnected(self) -> None:
        if self._handler is not None:
            self._handler.on_reconnected()

    # -- figures of every process -------------------------------------------------------------

    async def cluster_stats(self, local: dict[str, Any]) -> list[dict[str, Any]]:
        found = await self._share_stats(local)
        return [orjson.loads(raw) for raw in found if raw is not None]

    async def _share_stats(self, local: dict[str, Any]) -> list[bytes | None]:
        head = f"{self._prefix}:{{stats}}"
        result: list[bytes | None] = await self._call(
            "EVAL",
            STATS,
            2,
            f"{head}:nodes",
            f"{head}:node:{local['node']}",
            int(self._ttl_s * 1000),
            orjson.dumps(local),
        )
        return result

    async def _beat(self) -> None:
        """Keep this process's figures in Redis while it lives; they expire when it dies."""
        while True:
            if isinstance(self._handler, StatsSource):
                try:
                    await self._share_stats(self._handler.process_stats())
                except (BrokerUnavailable, redis.exceptions.RedisError, OSError) as exc:
                    log.debug("stats not shared: %s", exc)
            await asyncio.sleep(self._ttl_s / 3)


def _ignore_outage(fut: asyncio.Future[Any]) -> None:
    """A lost report only holds publications back until the next one (or a reseed)."""
    if not fut.cancelled() and fut.exception() is not None:
        log.debug("stored offset not reported: %s", fut.exception())
