"""Sharded pub/sub over a Redis Cluster: one link per primary that owns subscribed slots.

Each channel is subscribed (SSUBSCRIBE) on the primary serving its slot, over that primary's
one PubSubLink, so a process holds as many pub/sub connections as there are shards it listens
to, never one per channel. Channels follow their slot: when a link is lost (its primary died),
when the server drops a subscription (its slot was moved away) or refuses one (MOVED), the slot
map is read again and the channel is subscribed on its owner now. Once channels have moved, the
broker's handler hears `on_reconnected`, which brings every channel with subscribers up to date
from the store (all of them, not only the moved ones: the node has no narrower call, and a
channel already current costs one position read).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio.cluster import ClusterNode

from server.broker.base import BrokerUnavailable
from server.broker.redis_cluster import Topology
from server.broker.redis_conn import CONNECT_TIMEOUT_S, backoff
from server.broker.redis_pubsub import Dialect, PubSubLink, Redirected
from server.waits import woken

log = logging.getLogger("switchboard.redis")

#: How often the slot map is read while nothing seems wrong (a failover that left our links
#: untouched still shows up within this).
REFRESH_S = 5.0
#: How often, while some channel is away from its owner, the map is read and it is moved.
RETRY_S = 0.25
#: How often a subscribe follows a redirection before giving up.
REDIRECTS = 3


class ShardLinks:
    """The same calls as PubSubLink, over one link per shard primary."""

    def __init__(
        self,
        topology: Topology,
        dialect: Dialect,
        on_message: Callable[[bytes, bytes], None],
        on_reconnected: Callable[[], None],
    ) -> None:
        self._topology = topology
        self._dialect = dialect
        self._on_message = on_message
        self._on_reconnected = on_reconnected
        self._links: dict[str, PubSubLink] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}
        self._wanted: set[bytes] = set()
        self._home: dict[bytes, str] = {}  # channel -> primary it is subscribed (or subscribing) on
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._topology_down: str | None = "redis cluster: not connected yet"

    # -- state --------------------------------------------------------------------------------

    @property
    def down(self) -> str | None:
        """Why some wanted channel cannot be received now, or None."""
        if self._topology_down is not None:
            return self._topology_down
        for channel in self._wanted:
            reason = self.down_for(channel)
            if reason is not None:
                return reason
        return None

    def down_for(self, channel: bytes) -> str | None:
        """Why `channel` cannot be received now; None also for channels not subscribed."""
        if self._topology_down is not None:
            return self._topology_down
        if channel not in self._wanted:
            return None
        home = self._home.get(channel)
        link = self._links.get(home) if home is not None else None
        if link is None:
            return "redis cluster: channel moving to its new shard"
        return link.down

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, channels: set[bytes]) -> None:
        """Read the slot map and subscribe `channels`; never fails (a watcher keeps trying)."""
        self._wanted |= channels
        try:
            await asyncio.wait_for(asyncio.shield(self._topology.refresh()), CONNECT_TIMEOUT_S * 2)
            self._topology_down = None
        except (BrokerUnavailable, TimeoutError) as exc:
            self._topology_down = str(exc) or "redis cluster: slot map not read"
            log.warning("redis cluster not reachable yet: %s", self._topology_down)
        self._task = asyncio.ensure_future(self._watch())
        if self._topology_down is None:
            await self._rehome(announce=False)  # first subscriptions: nothing was missed

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)

    # -- channels -----------------------------------------------------------------------------

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe on the channel's primary and wait for it to confirm."""
        self._wanted.add(channel)
        try:
            for attempt in range(REDIRECTS):
                if self._topology_down is not None:
                    raise BrokerUnavailable(self._topology_down)
                node = self._topology.node_of(channel)
                self._home[channel] = node.name  # before waiting: an idle link stays open
                link = await self._link(node)
                try:
                    await link.subscribe(channel)
                    return
                except Redirected:
                    if attempt + 1 == REDIRECTS:
                        raise
                    await self._topology.refresh()
        except BrokerUnavailable:
            self._wanted.discard(channel)
            self._home.pop(channel, None)
            raise

    async def unsubscribe(self, channel: bytes) -> None:
        self._wanted.discard(channel)
        home = self._home.pop(channel, None)
        link = self._links.get(home) if home is not None else None
        if link is not None:
            await link.unsubscribe(channel)

    async def _link(self, node: ClusterNode) -> PubSubLink:
        """The link to `node`, started on first use."""
        link = self._links.get(node.name)
        if link is None:
            link = PubSubLink(
                self._topology.pool_for(node),
                self._dialect,
                self._on_message,
                self._on_reconnected,
                on_dropped=self._dropped,
                on_lost=self._wake.set,
            )
            self._links[node.name] = link
            self._starting[node.name] = asyncio.ensure_future(link.start(set()))
        await asyncio.shield(self._starting[node.name])
        return link

    def _dropped(self, channel: bytes) -> None:
        """A link gave a channel back (slot moved, MOVED): the watcher finds its owner."""
        self._home.pop(channel, None)
        self._wake.set()

    # -- following the slots ------------------------------------------------------------------

    async def _watch(self) -> None:
        """Read the slot map now and then, sooner while something is amiss; move channels."""
        attempt = 0
        while True:
            amiss = self._topology_down is not None or self.down is not None
            await woken(self._wake, RETRY_S if amiss else REFRESH_S)
            self._wake.clear()
            try:
                await self._topology.refresh()
                if self._topology_down is not None:
                    log.info("redis cluster slot map read")
                self._topology_down = None
                attempt = 0
            except BrokerUnavailable as exc:
                self._topology_down = str(exc)
                attempt += 1
                await asyncio.sleep(backoff(attempt))
                continue
            try:
                await self._rehome()
            except Exception:  # the watcher must outlive any one bad round
                log.exception("redis cluster: moving channels failed; trying again")

    async def _rehome(self, announce: bool = True) -> None:
        """Subscribe every wanted channel that is not on its slot's primary there."""
        moves: dict[bytes, ClusterNode] = {}
        for channel in list(self._wanted):
            try:
                node = self._topology.node_of(channel)
            except BrokerUnavailable:
                continue
            if self._home.get(channel) != node.name:
                moves[channel] = node
        if moves:
            await self._move(moves, announce)
        self._close_idle()

    async def _move(self, moves: dict[bytes, ClusterNode], announce: bool) -> None:
        for channel in moves:
            old = self._home.pop(channel, None)
            link = self._links.get(old) if old is not None else None
            if link is not None:
                await link.unsubscribe(channel)  # quietly nothing when its link is lost
        log.info("redis cluster: subscribing %d channel(s) on their new primaries", len(moves))
        results = await asyncio.gather(
            *(self._subscribe_moved(channel, node) for channel, node in moves.items()),
            return_exceptions=True,
        )
        if announce and any(r is True for r in results):
            self._on_reconnected()  # their subscribers may have missed publications meanwhile

    async def _subscribe_moved(self, channel: bytes, node: ClusterNode) -> bool:
        if channel not in self._wanted:
            return False
        self._home[channel] = node.name
        link = await self._link(node)
        try:
            await link.subscribe(channel)
        except BrokerUnavailable:
            if self._home.get(channel) == node.name:
                del self._home[channel]  # the next round tries again
            return False
        if channel not in self._wanted:  # unsubscribed meanwhile
            await link.unsubscribe(channel)
            return False
        return True

    def _close_idle(self) -> None:
        """Close links that carry nothing: their primary lost its slots or we left them."""
        used = set(self._home.values())
        for name in [n for n in self._links if n not in used]:
            starting = self._starting.get(name)
            if starting is not None and not starting.done():
                continue
            link = self._links.pop(name)
            self._starting.pop(name, None)
            asyncio.ensure_future(link.close())
