"""The publish path: a publication numbered by the broker, broadcast, then stored.

Offsets come from the broker, one channel's in the order its publications came to this process:
while a batch of a channel is at the broker, the next ones gather into the next batch. A channel
the broker knows nothing of (first use, or a broker that lost its state) is seeded from the store
first. Where the namespace keeps history, a publish returns once the store holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server import recovery
from server.broker.base import Backlogged, Broker, BrokerUnavailable
from server.config import NamespaceConfig
from server.observe.stats import Stats
from server.outage import guard
from server.position import Position, new_epoch
from server.protocol import Code, ProtocolError
from server.store.base import Store, StoreConflict
from server.unavailable import Unavailable

#: How long a publish waits for the store to catch up with a backlogged channel.
BACKLOG_WAIT_S = 2.0
#: The most publications of one channel sent to the broker in one call, and about the most bytes.
MAX_BATCH = 500
MAX_BATCH_BYTES = 1 << 20
#: After the store failed an append, publishes check it is back before broadcasting, for this
#: long: an outage then refuses publications instead of delivering ones it cannot acknowledge.
STORE_DOUBT_S = 5.0
#: How long the broker keeps the position of a channel without history once nobody keeps it:
#: nodes keep the channels they have subscribers of, every third of this.
IDLE_TTL_S = 60.0

Waiting = list[tuple[bytes, asyncio.Future[Position]]]


def channel_ttl(ns: NamespaceConfig) -> float:
    """How long a channel's position outlives its last use: as long as its history lives."""
    return max(ns.history_ttl_s, IDLE_TTL_S) if ns.keeps_history else IDLE_TTL_S


class Sequencer:
    """Numbers, sends and stores publications; seeds channels the broker does not know."""

    def __init__(
        self,
        broker: Broker,
        store: Store,
        stats: Stats,
        recoveries: recovery.Recoveries,
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.broker = broker
        self.store = store
        self.stats = stats
        self.recoveries = recoveries
        self.spawn = spawn
        #: Channels being seeded now, and the position each will have.
        self._seeding: dict[str, asyncio.Future[Position]] = {}
        #: Publications waiting for their channel's batch at the broker to come back.
        self._sequencing: dict[str, Waiting] = {}
        #: The channels whose batch at the broker waits for this process's next store of them.
        self._stores_awaited: dict[str, asyncio.Future[None]] = {}
        self._store_failed_at = -math.inf  # when a durable append last found the store down

    # -- positions ------------------------------------------------------------------------------

    async def position(self, channel: str, ns: NamespaceConfig) -> Position:
        """The channel's position at the broker, seeding the channel if the broker has none."""
        seeding = self._seeding.get(channel)
        if seeding is not None:  # its skipped offsets are not void yet: wait for them
            return await asyncio.shield(seeding)
        pos = await guard(self.broker.position(channel))
        return pos if pos is not None else await self._seed(channel, ns)

    async def _seed(self, channel: str, ns: NamespaceConfig) -> Position:
        """Seed the channel once however many ask at the same time (a restart's reconnecting
        subscribers all find it unseeded): they share one seed, and none reads the position
        before the skipped offsets are void, so none waits for them as holes."""
        seeding = self._seeding.get(channel)
        if seeding is None:
            seeding = self._seeding[channel] = asyncio.ensure_future(self._seed_now(channel, ns))
            seeding.add_done_callback(lambda _: self._seeding.pop(channel, None))
        return await asyncio.shield(seeding)

    async def _seed_now(self, channel: str, ns: NamespaceConfig) -> Position:
        """Give the broker a position for a channel it knows nothing of, from the store.

        A channel with history continues past every offset the broker may have handed out
        before it lost its state (the store's position plus the unstored window, reserved in
        the store first), so no position is used twice; those skipped offsets are claimed with
        the reservation and made void once the broker is seeded, so recovery across them need
        not wait. Without history a channel starts a new epoch.
        """
        start, stored, settle = Position(0, new_epoch()), None, None
        if ns.keeps_history:
            kept = await guard(self.store.position(channel))
            stored = 0
            if kept is not None:
                stored = kept.offset + recovery.unstored_window(ns)
                skipped = list(range(kept.offset + 1, stored + 1))
                settle = await guard(
                    self.store.claim(channel, kept.epoch, skipped, ns.history_ttl_s)
                )
                start = Position(stored, kept.epoch)
        try:
            seeded = await guard(self.broker.seed(channel, start, stored, channel_ttl(ns)))
        except ProtocolError:
            if settle is not None:  # give the claim up now, not a minute later (mongo_docs)
                with contextlib.suppress(Unavailable):
                    await settle(False)
            raise
        if settle is not None:
            await guard(settle(seeded))
        pos = await guard(self.broker.position(channel))
        if pos is None:
            raise ProtocolError(Code.UNAVAILABLE, "the broker lost the channel's position")
        return pos

    # -- publishing -----------------------------------------------------------------------------

    async def publish_many(
        self, channel: str, ns: NamespaceConfig, bodies: list[bytes], here: bool = False
    ) -> list[asyncio.Future[Position]]:
        """Queue publications of one channel, numbered in this order: each future holds the
        position once published (and stored, where the namespace keeps history), or the
        ProtocolError that refused it.

        While one batch of a channel is at the broker, the channel's next publications gather
        and go together as the next batch (one broker call): a connection that pipelines its
        publishes keeps their order, and a busy channel costs one round trip per batch.

        With `here`, when the channel has no batch in flight this one is sent (and its last run
        stored) before returning, in the caller's task: no task of its own and, on the
        in-memory broker and store, no loop turn. A caller publishing to several channels at
        once leaves it off, so that one channel's round trip does not hold up the next.
        """
        if ns.keeps_history and self._store_failed_at > time.monotonic() - STORE_DOUBT_S:
            await guard(self.store.check())  # recently down: refuse before broadcasting
            self._store_failed_at = -math.inf
        loop = asyncio.get_running_loop()
        queued = [(body, loop.create_future()) for body in bodies]
        waiting = self._sequencing.get(channel)
        if waiting is not None:
            waiting += queued
        elif here:
            batch, self._sequencing[channel] = _take_batch(queued)
            await self._run_batch(channel, ns, batch, here=True)
        else:
            self._sequencing[channel] = queued
            self._next_batch(channel, ns)
        return [fut for _, fut in queued]

    def _next_batch(self, channel: str, ns: NamespaceConfig) -> None:
        waiting = self._sequencing.get(channel)
        if not waiting:
            self._sequencing.pop(channel, None)
            return
        batch, rest = _take_batch(waiting)
        self._sequencing[channel] = rest
        self.spawn(self._run_batch(channel, ns, batch))

    async def _run_batch(
        self, channel: str, ns: NamespaceConfig, batch: Waiting, here: bool = False
    ) -> None:
        """Send a batch to the broker; each run sent is stored (in a task of its own, so the
        next run goes out meanwhile; `here`, the last one in this task) or, without history,
        acknowledged at once."""
        handed = 0  # the batch's first `handed` publications are sent
        last: tuple[Waiting, list[Position]] | None = None

        def sent(start: int, positions: list[Position]) -> None:
            nonlocal handed, last
            run = batch[start : start + len(positions)]
            handed = start + len(positions)
            if ns.keeps_history:
                if here and handed == len(batch):
                    last = (run, positions)  # nothing is awaited between this and the store
                else:
                    self.spawn(self._store(channel, ns, run, positions))
                return
            for (_, fut), pos in zip(run, positions, strict=True):
                if not fut.done():
                    fut.set_result(pos)

        window = recovery.unstored_window(ns) if ns.keeps_history else 0
        try:
            error = await self._sequence_batch(channel, ns, [b for b, _ in batch], window, sent)
            for _, fut in batch[handed:]:
                if not fut.done():
                    fut.set_exception(error or ProtocolError(Code.INTERNAL, "not published"))
        finally:
            for _, fut in batch[handed:]:
                if not fut.done():
                    fut.set_exception(ProtocolError(Code.UNAVAILABLE, "publishing was cancelled"))
            self._next_batch(channel, ns)
        if last is not None:
            await self._store(channel, ns, *last)

    async def _store(
        self, channel: str, ns: NamespaceConfig, run: Waiting, positions: list[Position]
    ) -> None:
        """Store a run of published publications and acknowledge each stored one."""
        keep = ns.history_size + recovery.unstored_window(ns)
        items = [(pos.offset, body) for (body, _), pos in zip(run, positions, strict=True)]
        started = time.perf_counter()
        try:
            refused = await self.store.append_many(
                channel, positions[0].epoch, items, keep, ns.history_ttl_s
            )
        except asyncio.CancelledError:  # the node is closing: nobody waits for ever
            for _, fut in run:
                if not fut.done():
                    fut.set_exception(ProtocolError(Code.UNAVAILABLE, "publishing was cancelled"))
            raise
        except Exception as exc:
            refused = dict.fromkeys(range(len(run)), exc)
        elapsed = time.perf_counter() - started
        newest = None
        for i, ((_, fut), pos) in enumerate(zip(run, positions, strict=True)):
            error = refused.get(i)
            if error is None:
                newest = pos
                self.stats.store_append.observe(elapsed)
                if not fut.done():
                    fut.set_result(pos)
                continue
            if isinstance(error, Unavailable):
                if not isinstance(error, StoreConflict):  # the store itself failed
                    self._store_failed_at = time.monotonic()
                error = ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {error}")
            if not fut.done():
                fut.set_exception(error)
        if newest is not None:
            self.broker.stored(channel, newest)
            self.recoveries.stored(channel)
        awaited = self._stores_awaited.pop(channel, None)
        if awaited is not None and not awaited.done():
            awaited.set_result(None)  # after the report above: it reaches the broker first

    async def _sequence_batch(
        self,
        channel: str,
        ns: NamespaceConfig,
        bodies: list[bytes],
        window: int,
        sent: Callable[[int, list[Position]], None],
    ) -> ProtocolError | None:
        """Number and send `bodies` in order; `sent(i, positions)` hears of each run sent from
        the i-th on, at once (their store writes are what frees the window). Returns why the
        rest were not sent. The broker is seeded first if it must be; while the channel's
        unstored window is full, this waits (a little)."""
        done = 0
        seeded, delay, deadline = False, 0.005, time.monotonic() + BACKLOG_WAIT_S
        ttl_s = channel_ttl(ns)
        stored: asyncio.Future[None] | None = None
        try:
            while done < len(bodies):
                if window:  # heard of a store of the channel while the broker call is out?
                    stored = self._await_store(channel)
                # No more than the window at once: the broker takes no more, and would be sent
                # the rest again and again.
                upto = done + window if window else len(bodies)
                try:
                    got = await self.broker.publish_many(channel, bodies[done:upto], window, ttl_s)
                except Backlogged as exc:
                    if time.monotonic() > deadline:
                        return ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}")
                    assert stored is not None
                    await _stored_or_after(stored, delay)
                    delay = min(delay * 2, 0.1)
                    continue
                except BrokerUnavailable as exc:
                    return ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}")
                if got is not None:
                    sent(done, got)
                    done += len(got)
                    deadline = time.monotonic() + BACKLOG_WAIT_S  # progress: wait afresh
                    if done < len(bodies):  # the window is full: more now would be refused
                        stored = self._await_store(channel)
                        await _stored_or_after(stored, delay)
                    continue
                if seeded:
                    return ProtocolError(Code.UNAVAILABLE, "the broker lost the channel's position")
                try:
                    await self._seed(channel, ns)
                except ProtocolError as exc:
                    return exc
                seeded = True
            return None
        finally:
            if stored is not None and self._stores_awaited.get(channel) is stored:
                del self._stores_awaited[channel]

    def _await_store(self, channel: str) -> asyncio.Future[None]:
        """A future done once this process next stores a publication of `channel`: the store
        reports it to the broker first, so a publish sent after it finds the window freed."""
        awaited = self._stores_awaited[channel] = asyncio.get_running_loop().create_future()
        return awaited


async def _stored_or_after(stored: asyncio.Future[None], delay: float) -> None:
    """Wait for `stored`, or `delay` seconds when the window is held by other processes'."""
    if stored.done():
        return
    timer = asyncio.get_running_loop().call_later(delay, _wake, stored)
    try:
        await stored
    finally:
        timer.cancel()


def _wake(waiting: asyncio.Future[None]) -> None:
    if not waiting.done():
        waiting.set_result(None)


def _take_batch(waiting: Waiting) -> tuple[Waiting, Waiting]:
    """The next batch (at most MAX_BATCH publications and about MAX_BATCH_BYTES) and the rest."""
    size = 0
    for i, (body, _) in enumerate(waiting):
        size += len(body)
        if i and (i >= MAX_BATCH or size > MAX_BATCH_BYTES):
            return waiting[:i], waiting[i:]
    return waiting, []
