"""The in-process broker: one process, no Redis. Offsets are sequenced here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from server.broker.base import Backlogged, Broker, BrokerHandler
from server.position import Position


@dataclass(slots=True)
class _Sequence:
    offset: int
    epoch: str
    stored: int | None
    expires: float


class MemoryBroker(Broker):
    def __init__(self) -> None:
        self._handler: BrokerHandler | None = None
        self._positions: dict[str, _Sequence] = {}
        self._subscribed: set[str] = set()

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None
        self._subscribed.clear()

    async def check(self) -> None:
        pass

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    async def publish(
        self, channel: str, body: bytes, window: int, ttl_s: float
    ) -> Position | None:
        seq = self._sequence(channel)
        if seq is None:
            return None
        if seq.stored is not None and seq.offset >= seq.stored + window:
            raise Backlogged(f"{window} publications of {channel} are not stored yet")
        seq.offset += 1
        seq.expires = time.monotonic() + ttl_s
        if channel in self._subscribed and self._handler is not None:
            self._handler.on_publication(channel, seq.offset, seq.epoch, body)
        return Position(seq.offset, seq.epoch)

    def _sequence(self, channel: str) -> _Sequence | None:
        seq = self._positions.get(channel)
        if seq is not None and seq.expires <= time.monotonic():
            del self._positions[channel]
            return None
        return seq

    async def position(self, channel: str) -> Position | None:
        seq = self._sequence(channel)
        return None if seq is None else Position(seq.offset, seq.epoch)

    async def seed(
        self, channel: str, position: Position, stored: int | None, ttl_s: float
    ) -> bool:
        if self._sequence(channel) is not None:
            return False
        expires = time.monotonic() + ttl_s
        self._positions[channel] = _Sequence(position.offset, position.epoch, stored, expires)
        return True

    async def keep(self, channels: list[tuple[str, float]]) -> None:
        """Keep these, and forget every position whose ttl passed."""
        now = time.monotonic()
        for channel, ttl_s in channels:
            seq = self._positions.get(channel)
            if seq is not None:
                seq.expires = max(seq.expires, now + ttl_s)
        for channel in [c for c, seq in self._positions.items() if seq.expires <= now]:
            del self._positions[channel]

    def stored(self, channel: str, position: Position) -> None:
        seq = self._positions.get(channel)
        if seq is not None and seq.stored is not None and seq.epoch == position.epoch:
            seq.stored = max(seq.stored, position.offset)

    async def publish_join_leave(self, channel: str, client_id: str, frame: bytes) -> None:
        if channel in self._subscribed and self._handler is not None:
            self._handler.on_join_leave(channel, client_id, frame)

    async def publish_control(self, message: bytes) -> None:
        if self._handler is not None:
            self._handler.on_control(message)

    async def cluster_stats(self, local: dict[str, Any]) -> list[dict[str, Any]]:
        return [local]
