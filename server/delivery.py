"""Delivery of the broker's publications to local subscribers, gapless or not at all.

Every publication reaches local subscribers through `on_publication`: encoded into one WebSocket
frame there, written to every subscriber. Each channel with live subscribers remembers how far it
is delivered here; a publication that does not follow (a gap) or a broker that reconnected
(publications may have been lost meanwhile) brings the channel up to date from the store, holding
newer publications meanwhile. What cannot be proven complete ends the subscriptions instead, and
their clients resubscribe with recovery (server/recovery.py holds the rules of that proof).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Generic

from server import protocol, recovery
from server.config import NamespaceConfig
from server.hub import C, Hub
from server.observe.stats import Stats
from server.outage import guard
from server.position import Position
from server.protocol import Code, ProtocolError
from server.ws import frame as wsframe

log = logging.getLogger("switchboard.node")

#: Reason of the `unsubscribed` push when a subscription cannot stay gapless.
RESUBSCRIBE = "insufficient_state"
#: Channels brought up to date at once after the broker reconnected.
RESYNC_CONCURRENCY = 8
#: Tries at bringing a channel up to date while its services answer `unavailable` (about 3 s).
RESYNC_ATTEMPTS = 5
#: Marks a channel being brought up to date in `_last`: no publication is its successor.
RESYNCING = ("", -2)


class Delivery(Generic[C]):
    """Delivers publications in offset order; brings channels up to date after gaps."""

    def __init__(
        self,
        hub: Hub[C],
        stats: Stats,
        recoveries: recovery.Recoveries,
        namespace: Callable[[str], NamespaceConfig],
        position: Callable[[str, NamespaceConfig], Awaitable[Position]],
        unsubscribe: Callable[[C, str], Awaitable[None]],
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.hub = hub
        self.stats = stats
        self.recoveries = recoveries
        self._namespace = namespace
        self._position = position
        self._unsubscribe = unsubscribe
        self._spawn = spawn
        #: How far each channel with live subscribers is delivered here: (epoch, offset).
        self._last: dict[str, tuple[str, int]] = {}
        #: Publications held while a channel is brought up to date: (offset, epoch, body).
        self._resyncing: dict[str, list[tuple[int, str, bytes]]] = {}
        self._resync_slots = asyncio.Semaphore(RESYNC_CONCURRENCY)

    def live(self, channel: str, epoch: str, offset: int) -> None:
        """The channel's first live subscriber here was delivered up to `offset`: from now on
        a gap in the very next publication is noticed too."""
        if channel not in self._last:
            self._last[channel] = (epoch, offset)

    def forget(self, channel: str) -> None:
        """The channel has no subscribers here any more."""
        self._last.pop(channel, None)

    # -- the broker's callbacks (the node hands them to the broker as they are) -----------------

    def on_publication(self, channel: str, offset: int, epoch: str, body: bytes) -> None:
        last = self._last.get(channel)
        if last is not None and (last[1] + 1 != offset or last[0] != epoch):
            self._out_of_turn(channel, offset, epoch, body, last)
            return
        self._last[channel] = (epoch, offset)
        frame = wsframe.text(protocol.pub_push(offset, body))
        self.stats.sent += self.hub.broadcast(channel, offset, frame)
        self.stats.observe_lag(body)

    def _out_of_turn(
        self, channel: str, offset: int, epoch: str, body: bytes, last: tuple[str, int]
    ) -> None:
        """A publication that does not follow the last one delivered: hold it while the
        channel is brought up to date, or start doing so."""
        held = self._resyncing.get(channel)
        if held is not None:
            held.append((offset, epoch, body))
        elif last[0] == epoch and offset <= last[1]:
            log.warning("%s: offset %d again after %d: dropped", channel, offset, last[1])
        else:
            log.info("gap in %s: %s after %s", channel, (epoch, offset), last)
            self._resync(channel, Position(last[1], last[0]), [(offset, epoch, body)])

    def on_reconnected(self) -> None:
        """The broker came back: every channel with local subscribers may have missed some.

        Each is brought up to date from the store, a few at a time; a channel whose
        subscribers are all still subscribing has no delivered position to recover from, so
        those subscriptions end and their clients resubscribe.
        """
        for channel in self.hub.channels():
            last = self._last.get(channel)
            if channel in self._resyncing:
                continue
            if last is None:
                self._end_subscriptions(channel, RESUBSCRIBE)
            else:
                self._resync(channel, Position(last[1], last[0]), [])

    # -- bringing a channel up to date ----------------------------------------------------------

    def _resync(self, channel: str, since: Position, held: list[tuple[int, str, bytes]]) -> None:
        """Bring a channel's live subscribers from `since` up to date, holding new
        publications meanwhile; if that cannot be proven complete, end their subscriptions."""
        self._resyncing[channel] = held
        self._last[channel] = RESYNCING
        self._spawn(self._run_resync(channel, since))

    async def _run_resync(self, channel: str, since: Position) -> None:
        complete, reached = False, since
        pubs: recovery.Missed = []
        delay = random.uniform(0, 0.05)  # processes do not move in step
        for attempt in range(RESYNC_ATTEMPTS):
            await asyncio.sleep(delay)
            try:
                async with self._resync_slots:
                    ns = self._namespace(channel)
                    reached = await self._position(channel, ns)
                    complete, pubs = await guard(
                        self.recoveries.missed(channel, ns, since, reached)
                    )
                break
            except ProtocolError as exc:
                # A service just back may fail the first calls (a pooled connection it
                # closed): try again a few times before the subscribers must resubscribe.
                if exc.code != Code.UNAVAILABLE or attempt + 1 == RESYNC_ATTEMPTS:
                    log.warning("%s not brought up to date: %s", channel, exc.message)
                    break
                delay = 0.1 * 2**attempt
        held = self._resyncing.pop(channel, [])
        if not self.hub.subscriber_count(channel):
            self._last.pop(channel, None)
            return
        if not complete:
            self._end_subscriptions(channel, RESUBSCRIBE)
            return
        for offset, body in pubs:
            frame = wsframe.text(protocol.pub_push(offset, body))
            self.stats.sent += self.hub.broadcast(channel, offset, frame)
        last = (reached.epoch, reached.offset)
        for offset, epoch, body in sorted(held):
            if epoch == last[0] and offset <= last[1]:
                continue  # recovered from the store already
            if epoch != last[0] or offset != last[1] + 1:
                # Everything after the position read is held, so this is no ordinary gap.
                log.warning(
                    "%s: %s does not follow %s after recovery", channel, (epoch, offset), last
                )
                self._end_subscriptions(channel, RESUBSCRIBE)
                return
            last = (epoch, offset)
            frame = wsframe.text(protocol.pub_push(offset, body))
            self.stats.sent += self.hub.broadcast(channel, offset, frame)
        self._last[channel] = last

    def _end_subscriptions(self, channel: str, reason: str) -> None:
        """End every local subscription of `channel`: nothing here is delivered from now on."""
        self._last.pop(channel, None)
        frame = wsframe.text(protocol.unsubscribed_push(channel, reason))
        for client in self.hub.subscribers(channel):
            client.send(frame)
            self._spawn(self._unsubscribe(client, channel))
