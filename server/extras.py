"""What the node carries beyond its core: webhooks, the channel directory, admin actions.

Built in the composition root (server/app.py) and given to the node as its `extension`: the
node starts and closes it with itself, hands it control messages it does not know, and the
publications of namespaces with `webhook_publications`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server import admin
from server.broker import redis_conn
from server.config import Config
from server.observe.directory import Directory, RedisClient
from server.position import Position
from server.webhooks import service as webhooks

if TYPE_CHECKING:
    from server.node import Node


def _redis_client(cfg: Config) -> RedisClient | None:
    """A client of its own for `[redis] url` (of the cluster with `[redis] cluster`)."""
    if not cfg.redis.url:
        return None
    if cfg.redis.cluster:
        return redis_conn.cluster_client(cfg.redis.url)
    return redis_conn.client(cfg.redis.url)


class Extras:
    def __init__(self, node: Node) -> None:
        cfg = node.config
        self._node = node
        self._redis = _redis_client(cfg)
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
