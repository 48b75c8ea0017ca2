"""Live figures for the pages, published over the WebSocket itself once a second.

Two server-only channels in the `sys` namespace (config.toml: publish = "server"):
- `sys:channels`, open to anyone: the public channels this process knows of, with their
  subscriber counts (presence counts, cluster-wide, where the namespace keeps presence);
- `sys:stats#admins`, a personal channel of a user id no login produces, so only connection
  tokens that list it (the admin page mints them for admins) may subscribe: every process's
  figures, gathered through the broker.

A process publishes a feed only while it has local subscribers to it, so an idle cluster does
no work; with admins on several processes each of them publishes (pages key figures by node).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import tornado.ioloop

from server import protocol
from server.node import Node
from server.presence.stats import presence_stats
from server.protocol import ProtocolError

log = logging.getLogger("switchboard.statsfeed")

NAMESPACE = "sys"
CHANNELS = f"{NAMESPACE}:channels"
STATS = f"{NAMESPACE}:stats#admins"
ROOMS = ("lobby", "chat:lobby")  # always listed, so a fresh server has somewhere to go
MAX_LISTED = 50
INTERVAL_S = 1.0


def is_listed(channel: str) -> bool:
    """Public channels only: not the feeds themselves, not anybody's personal channel."""
    ns, rest = protocol.split_channel(channel)
    return ns != NAMESPACE and protocol.personal_users(rest) is None


class StatsFeed:
    def __init__(self, node: Node, interval_s: float = INTERVAL_S) -> None:
        self.node = node
        self._timer = tornado.ioloop.PeriodicCallback(self.tick, interval_s * 1000)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    async def tick(self) -> None:
        hub = self.node.hub
        try:
            if hub.subscriber_count(STATS):
                processes = await self.node.cluster_stats()
                await self.node.publish(STATS, {"ts": time.time(), "processes": processes}, None)
            if hub.subscriber_count(CHANNELS):
                await self.node.publish(CHANNELS, {"channels": await self.channel_counts()}, None)
        except ProtocolError as exc:
            log.warning("stats feed skipped a beat: %s", exc.message)

    async def channel_counts(self) -> list[dict[str, Any]]:
        listed = sorted({*ROOMS, *filter(is_listed, self.node.hub.channels())})[:MAX_LISTED]
        counts = []
        for channel in listed:
            ns = self.node.config.namespace_of(channel)
            if ns is None:
                continue
            if ns.presence:
                count = (await presence_stats(self.node, channel))["clients"]
            else:
                count = self.node.hub.subscriber_count(channel)
            counts.append({"channel": channel, "subscribers": count})
        return counts
