"""Live figures for the pages, published over the WebSocket itself once a second.

Two server-only channels in the `sys` namespace (config.toml: publish = "server"):
- `sys:channels`, open to anyone: the channels anonymous visitors may read that this process
  knows of, the busiest first (at most MAX_LISTED), with their subscriber counts (presence
  counts, cluster-wide, where the namespace keeps presence);
- `sys:stats#admins`, a personal channel of a user id no login produces, so only connection
  tokens that list it (the admin page mints them for admins) may subscribe: every process's
  figures, gathered through the broker.

A process publishes a feed only while it has local subscribers to it, so an idle cluster does
no work; with admins on several processes each of them publishes (pages key figures by node).
"""

from __future__ import annotations

import heapq
import logging
import time
from typing import Any

import tornado.ioloop

from server import auth, protocol
from server.config import Config
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


def is_listed(channel: str, config: Config) -> bool:
    """Only what an anonymous visitor may read: not the feeds themselves, not a members-only
    namespace, not anybody's personal channel (nor one of a namespace not configured)."""
    if protocol.split_channel(channel)[0] == NAMESPACE:
        return False
    try:
        auth.check_subscribe(auth.ANONYMOUS, channel, config.namespace_of(channel))
    except ProtocolError:
        return False
    return True


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

    def candidates(self) -> list[str]:
        """The public channels worth listing: the rooms, then the busiest here.

        Ranked by local subscribers (no I/O), so a flood of channels with one subscriber each
        cannot push busier ones off the list, whatever their names.
        """
        hub, config = self.node.hub, self.node.config
        rooms = [c for c in ROOMS if is_listed(c, config)]
        others = [c for c in hub.channels() if c not in rooms and is_listed(c, config)]
        busiest = heapq.nsmallest(
            MAX_LISTED - len(rooms), others, key=lambda c: (-hub.subscriber_count(c), c)
        )
        return rooms + busiest

    async def channel_counts(self) -> list[dict[str, Any]]:
        counts: list[dict[str, Any]] = []
        for channel in self.candidates():
            ns = self.node.config.namespace_of(channel)  # known: candidates are listed
            if ns.presence:
                count = (await presence_stats(self.node, channel, ns))["clients"]
            else:
                count = self.node.hub.subscriber_count(channel)
            counts.append({"channel": channel, "subscribers": count})
        counts.sort(key=lambda c: (-c["subscribers"], c["channel"]))
        return counts
