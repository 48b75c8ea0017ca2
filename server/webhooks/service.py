"""Webhooks for one node: the tracker feeds claims, claims make events, the sender sends them.

Built only when `[webhooks] url` is set. Events wait in MongoDB (`[mongo] url` a mongodb://
URL) or, for `memory:`, in the process; claims live in Redis when `[redis] url` is set, so of
all processes exactly one makes each event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from server import protocol
from server.config import Config
from server.hub import Hub
from server.position import Position
from server.protocol import Code, ProtocolError
from server.store.base import StoreUnavailable
from server.webhooks import events
from server.webhooks.claims import USER, Claims, MemoryClaims
from server.webhooks.mongo_queue import MongoQueue
from server.webhooks.queue import EventQueue, MemoryQueue
from server.webhooks.redis_claims import RedisClaims, RedisClient
from server.webhooks.sender import Sender
from server.webhooks.tracker import Tracker

log = logging.getLogger("switchboard.webhooks")

#: Channels of Switchboard's own feeds (server/observe/statsfeed.py) make no events.
INTERNAL_NAMESPACE = "sys"
_TYPES = {
    (USER, True): events.USER_ONLINE,
    (USER, False): events.USER_OFFLINE,
    ("channel", True): events.CHANNEL_OCCUPIED,
    ("channel", False): events.CHANNEL_VACATED,
}


def is_tracked(channel: str) -> bool:
    return protocol.split_channel(channel)[0] != INTERNAL_NAMESPACE


def build_queue(config: Config) -> EventQueue:
    if config.mongo.url.startswith("mongodb"):
        return MongoQueue(config.mongo)
    return MemoryQueue()


def build_claims(
    config: Config, node_id: str, client: RedisClient | None, clock: events.SeqClock
) -> Claims:
    debounce = config.webhooks.offline_after_s
    if client is None:
        return MemoryClaims(debounce, clock)
    rc = config.redis
    return RedisClaims(client, rc.prefix, node_id, rc.presence_ttl_s, debounce)


def build(config: Config, hub: Hub[Any], node_id: str, client: RedisClient | None) -> Webhooks:
    """The webhooks `config` asks for; `client` is the Redis to claim in (None: no Redis)."""
    clock = events.SeqClock()
    claims = build_claims(config, node_id, client, clock)
    return Webhooks(config, hub, build_queue(config), claims, clock)


class Webhooks:
    def __init__(
        self,
        config: Config,
        hub: Hub[Any],
        queue: EventQueue,
        claims: Claims,
        clock: events.SeqClock,
    ) -> None:
        self.config = config.webhooks
        self.queue = queue
        self.sender = Sender(config.webhooks, queue)
        self.tracker = Tracker(
            claims,
            self._changed,
            sweep_s=min(1.0, max(0.05, self.config.offline_after_s / 4)),
            renew_s=config.redis.presence_ttl_s / 3,
            tracked=is_tracked,
        )
        self._hub = hub
        self._clock = clock  # the claims' too without Redis: one order per channel
        self._puts: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.queue.start()
        self._hub.observer = self.tracker
        self.tracker.start()
        self.sender.start()

    async def close(self) -> None:
        self._hub.observer = None
        await self.tracker.stop()
        if self._puts:
            await asyncio.wait(self._puts, timeout=2.0)
        await self.sender.stop()
        await self.queue.close()

    def _changed(self, kind: str, key: str, present: bool, seq: int) -> None:
        type_ = _TYPES[(kind, present)]
        if type_ not in self.config.events:
            return
        event = events.make(type_, {kind: key}, f"{kind}:{key}", seq)
        task = asyncio.ensure_future(self._put(event))
        self._puts.add(task)
        task.add_done_callback(self._puts.discard)

    async def _put(self, event: events.Event) -> None:
        """Queue an event the claims gave this process: it exists nowhere else, so keep trying."""
        delay = 0.1
        while True:
            try:
                await self.queue.put(event)
                self.sender.wake()
                return
            except StoreUnavailable as exc:
                if time.time() - event.created > self.config.retry_for_s:
                    log.warning("webhooks: %s %s lost: %s", event.type, event.id, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def published(self, channel: str, pos: Position, body: bytes) -> None:
        """Queue a `publication` event; the publish fails `unavailable` if it cannot be kept."""
        if events.PUBLICATION not in self.config.events:
            return
        data: dict[str, Any] = orjson.loads(body)
        data.update(offset=pos.offset, epoch=pos.epoch)
        event = events.make(events.PUBLICATION, data, f"channel:{channel}", self._clock.next())
        try:
            await self.queue.put(event)
        except StoreUnavailable as exc:
            raise ProtocolError(Code.UNAVAILABLE, f"webhook not queued: {exc}") from None
        self.sender.wake()
