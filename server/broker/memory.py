"""The in-process broker: one process, no Redis. Offsets are sequenced here."""

from __future__ import annotations

from typing import Any

from server.broker.base import Broker, BrokerHandler
from server.position import Position


class MemoryBroker(Broker):
    def __init__(self) -> None:
        self._handler: BrokerHandler | None = None
        self._positions: dict[str, Position] = {}
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

    async def publish(self, channel: str, body: bytes) -> Position | None:
        pos = self._positions.get(channel)
        if pos is None:
            return None
        pos = self._positions[channel] = Position(pos.offset + 1, pos.epoch)
        if channel in self._subscribed and self._handler is not None:
            self._handler.on_publication(channel, pos.offset, pos.epoch, body)
        return pos

    async def position(self, channel: str) -> Position | None:
        return self._positions.get(channel)

    async def seed(self, channel: str, position: Position) -> None:
        self._positions.setdefault(channel, position)

    async def publish_join_leave(self, channel: str, client_id: str, frame: bytes) -> None:
        if channel in self._subscribed and self._handler is not None:
            self._handler.on_join_leave(channel, client_id, frame)

    async def publish_control(self, message: bytes) -> None:
        if self._handler is not None:
            self._handler.on_control(message)

    async def cluster_stats(self, local: dict[str, Any]) -> list[dict[str, Any]]:
        return [local]
