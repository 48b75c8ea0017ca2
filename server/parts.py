"""What runs around the node: services it starts and stops with itself, and the extension it
tells of publications and control messages (webhooks, admin actions: server/extras.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import tornado.ioloop

from server.position import Position


class Service(Protocol):
    """A periodic task that lives as long as the node."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Extension(Protocol):
    """What the node tells the parts built around it (webhooks, admin actions: server/extras.py)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def published(self, channel: str, pos: Position, body: bytes) -> None:
        """A publication in a namespace with `webhook_publications`, before it is acknowledged."""

    def on_control(self, msg: dict[str, Any]) -> None:
        """A control message of an op the node does not handle itself."""


class Every:
    """A coroutine run every `interval_s` while the node lives."""

    def __init__(self, interval_s: float, run: Callable[[], Awaitable[None]]) -> None:
        self._timer = tornado.ioloop.PeriodicCallback(run, interval_s * 1000)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
