"""Redis Cluster routing: which primary serves a key, and one pipeline per primary per loop turn.

redis-py's RedisCluster keeps the slot map (CLUSTER SLOTS) and follows MOVED, ASK and TRYAGAIN.
What it does not do is keep shards apart: its pipeline sends every node's part at once and
fails as a whole when one node's connection fails. The ClusterBatcher therefore routes each
command to its primary when it is queued and drains one queue per primary, so a shard that is
failing over delays and fails only its own commands, while every other shard goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import SlotNotCoveredError

from server.broker.base import BrokerUnavailable
from server.broker.redis_conn import CLUSTER_ERRORS, unavailable

log = logging.getLogger("switchboard.redis")

Queued = tuple[tuple[Any, ...], "asyncio.Future[Any]"]

#: Keyless commands (PING) go to whichever primary redis-py picked as its default node.
ANY_NODE = ""


def key_of(args: tuple[Any, ...]) -> bytes | None:
    """The key a command is routed by: EVAL's first key, else its first argument."""
    name = str(args[0]).upper()
    if name in ("EVAL", "EVALSHA"):
        return _bytes(args[3]) if int(args[2]) > 0 else None
    if name in ("PING", "INFO", "TIME"):
        return None
    return _bytes(args[1])


def _bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


class Topology:
    """The slot map of one cluster client, refreshed on demand (one refresh at a time)."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self._loaded = False
        self._refreshing: asyncio.Future[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded

    def node_of(self, key: bytes) -> ClusterNode:
        """The primary serving `key`'s slot; BrokerUnavailable when no node serves it."""
        try:
            return self.cluster.nodes_manager.get_node_from_slot(key_slot(key))
        except (SlotNotCoveredError, KeyError) as exc:
            raise BrokerUnavailable(f"redis cluster: slot of {key!r} not served: {exc}") from None

    def any_node(self) -> ClusterNode:
        node = self.cluster.get_default_node()
        if node is None:
            raise BrokerUnavailable("redis cluster: no node known yet")
        return node

    def pool_for(self, node: ClusterNode) -> redis.asyncio.ConnectionPool:
        """A pool of `node`'s connections with the cluster client's settings (pub/sub links)."""
        return redis.asyncio.ConnectionPool(
            connection_class=node.connection_class, **node.connection_kwargs
        )

    def refresh(self) -> asyncio.Future[None]:
        """Read the slot map again; callers asking meanwhile share the one in flight."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        return self._refreshing

    async def _refresh(self) -> None:
        try:
            if not self._loaded:
                await self.cluster.initialize()
            else:
                await self.cluster.nodes_manager.initialize()
        except CLUSTER_ERRORS as exc:
            raise unavailable(exc) from None
        self._loaded = True


def _quiet(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.debug("redis cluster slot map not refreshed: %s", fut.exception())


class ClusterBatcher:
    """The Batcher of a cluster: one queue, and one pipeline in flight, per primary.

    Commands of one primary go out in the order given, so one channel's publications (one
    slot, one primary) keep their order. A connection error fails that primary's commands
    with BrokerUnavailable (never retried: a publish may have run) and refreshes the slot map.
    """

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._queues: dict[str, list[Queued]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def call(self, *args: Any) -> Any:
        return await self.submit(*args)

    def submit(self, *args: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        key = key_of(args)
        try:
            if not self._topology.loaded:
                name = ANY_NODE  # routed once the map is read, below
            elif key is None:
                name = self._topology.any_node().name
            else:
                name = self._topology.node_of(key).name
        except BrokerUnavailable as exc:
            fut.set_exception(exc)
            self._topology.refresh().add_done_callback(_quiet)
            return fut
        self._queues.setdefault(name, []).append((args, fut))
        if name not in self._tasks:
            self._tasks[name] = asyncio.ensure_future(self._drain(name))
        return fut

    async def _drain(self, name: str) -> None:
        try:
            while batch := self._queues.pop(name, None):
                await self._send(batch)
        finally:
            del self._tasks[name]

    async def _send(self, batch: list[Queued]) -> None:
        cluster = self._topology.cluster
        try:
            if not self._topology.loaded:
                await self._topology.refresh()
            keyless = [(a, f) for a, f in batch if key_of(a) is None]
            keyed = [(a, f) for a, f in batch if key_of(a) is not None]
            for args, fut in keyless:
                reply = await cluster.execute_command(*args, target_nodes=self._topology.any_node())
                if not fut.done():
                    fut.set_result(reply)
            results: list[Any] = []
            if keyed:
                pipe = cluster.pipeline(transaction=False)
                for args, _ in keyed:
                    pipe.execute_command(*args)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # every caller hears of it; an outage reads `unavailable`
            outage = isinstance(exc, CLUSTER_ERRORS) or isinstance(exc, BrokerUnavailable)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(_as_unavailable(exc) if outage else exc)
            if outage:
                self._topology.refresh().add_done_callback(_quiet)
            return
        lost = False
        for (_, fut), result in zip(keyed, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, CLUSTER_ERRORS):
                lost = True
                fut.set_exception(unavailable(result))
            elif isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)
        if lost:
            self._topology.refresh().add_done_callback(_quiet)


def _as_unavailable(exc: BaseException) -> BrokerUnavailable:
    return exc if isinstance(exc, BrokerUnavailable) else unavailable(exc)
