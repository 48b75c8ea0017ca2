"""What the node carries beyond its core: webhooks, the channel directory, admin actions.

Built in the composition root (server/app.py) and given to the node as its `extension`: the
node starts and closes it with itself, hands it control messages it does not know, and the
publications of namespaces with `webhook_publications`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.asyncio

from server import admin
from server.broker import redis_conn
from server.directory import Directory
from server.position import Position
from server.webhooks import service as webhooks

if TYPE_CHECKING:
    from server.node import Node


class Extras:
    def __init__(self, node: Node) -> None:
        cfg = node.config
        self._node = node
        self._redis: redis.asyncio.Redis | None = (
            redis_conn.client(cfg.redis.url) if cfg.redis.url else None
        )
        self.directory = Directory(node.hub, node.id, self._redis, cfg.redis.prefix)
        self.webhooks = (
            webhooks.build(cfg, node.hub, node.id, self._redis) if cfg.webhooks.url else None
        )

    async def start(self) -> None:
        self.directory.start()
        if self.webhooks is not None:
            await self.webhooks.start()

    async def close(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.close()
        await self.directory.stop()
        if self._redis is not None:
            await self._redis.aclose()

    async def published(self, channel: str, pos: Position, body: bytes) -> None:
        if self.webhooks is not None:
            await self.webhooks.published(channel, pos, body)

    def on_control(self, msg: dict[str, Any]) -> None:
        admin.on_control(self._node, msg)
