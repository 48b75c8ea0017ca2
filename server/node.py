"""The node: coordinates hub, broker, store and presence in one process. One delivery path.

Whatever the broker, every publication reaches local subscribers through `on_publication`: it
is encoded into one WebSocket frame there and that frame is written to every subscriber. The
first local subscriber of a channel subscribes the broker; the last one leaving unsubscribes it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol, TypeVar

import orjson
import tornado.ioloop

from server import protocol, recovery
from server.broker.base import Backlogged, Broker, BrokerUnavailable
from server.config import Config, NamespaceConfig
from server.hub import Hub, Subscriber
from server.observe.stats import Stats
from server.position import Position, new_epoch
from server.presence.base import Presence
from server.process.drain import Drainable
from server.protocol import Code, ProtocolError
from server.store.base import Store, StoreConflict
from server.unavailable import Unavailable
from server.ws import frame as wsframe

log = logging.getLogger("switchboard.node")
T = TypeVar("T")

#: Reason of the `unsubscribed` push when a subscription cannot stay gapless.
RESUBSCRIBE = "insufficient_state"
#: Channels brought up to date at once after the broker reconnected.
RESYNC_CONCURRENCY = 8
#: Tries at bringing a channel up to date while its services answer `unavailable` (about 3 s).
RESYNC_ATTEMPTS = 5
#: How long a publish waits for the store to catch up with a backlogged channel.
BACKLOG_WAIT_S = 2.0
#: The most publications of one channel sent to the broker in one call, and about the most bytes.
MAX_BATCH = 500
MAX_BATCH_BYTES = 1 << 20
#: Marks a channel being brought up to date in `_last`: no publication is its successor.
RESYNCING = ("", -2)
#: After the store failed an append, publishes check it is back before broadcasting, for this
#: long: an outage then refuses publications instead of delivering ones it cannot acknowledge.
STORE_DOUBT_S = 5.0
#: How long closing waits for background work (clean-ups, unsubscribes) to finish.
CLOSE_WAIT_S = 1.0
#: How long the broker keeps the position of a channel without history once nobody keeps it:
#: nodes keep the channels they have subscribers of, every third of this.
IDLE_TTL_S = 60.0


def channel_ttl(ns: NamespaceConfig) -> float:
    """How long a channel's position outlives its last use: as long as its history lives."""
    return max(ns.history_ttl_s, IDLE_TTL_S) if ns.keeps_history else IDLE_TTL_S


class Client(Subscriber, Protocol):
    """What the node (and its keep-alive and drain) needs of a connection."""

    name: str | None
    alive: bool

    @property
    def session(self) -> str | None: ...

    def disconnect(
        self, code: int, reason: str, reconnect: bool, delay_ms: int | None = None
    ) -> None: ...


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


class _Waiting:
    """Recoveries of one channel waiting for offsets to be stored."""

    __slots__ = ("event", "count")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.count = 0


class Every:
    """A coroutine run every `interval_s` while the node lives."""

    def __init__(self, interval_s: float, run: Callable[[], Awaitable[None]]) -> None:
        self._timer = tornado.ioloop.PeriodicCallback(run, interval_s * 1000)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()


class Node:
    def __init__(
        self,
        config: Config,
        hub: Hub[Client],
        broker: Broker,
        store: Store,
        presence: Presence,
        stats: Stats | None = None,
    ) -> None:
        self.config = config
        self.hub = hub
        self.broker = broker
        self.store = store
        self.presence = presence
        self.stats = stats or Stats()
        self.id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self._broker_subs: dict[str, asyncio.Future[None]] = {}
        #: How far each channel with live subscribers is delivered here: (epoch, offset).
        self._last: dict[str, tuple[str, int]] = {}
        #: Publications held while a channel is brought up to date: (offset, epoch, body).
        self._resyncing: dict[str, list[tuple[int, str, bytes]]] = {}
        self._resync_slots = asyncio.Semaphore(RESYNC_CONCURRENCY)
        #: Channels being recovered: an event set on each local append, and how many wait.
        self._stored_events: dict[str, _Waiting] = {}
        #: Channels being seeded now, and the position each will have.
        self._seeding: dict[str, asyncio.Future[Position]] = {}
        #: Publications waiting for their channel's batch at the broker to come back.
        self._sequencing: dict[str, list[tuple[bytes, asyncio.Future[Position]]]] = {}
        self._emptied = asyncio.Event()  # set when the last client left
        #: How long recovery waits for a missing offset before making it void.
        self.hole_wait_s = recovery.HOLE_WAIT_S
        self._services: list[Service] = []
        self._started = False
        self._store_failed_at = -math.inf  # when a durable append last found the store down
        self._background: set[asyncio.Future[Any]] = set()
        self.extension: Extension | None = None
        #: Handlers of control messages by `op`, beyond `disconnect` (server/sse/ adds one).
        self.control_handlers: dict[str, Callable[[dict[str, Any]], None]] = {}

    async def start(self) -> None:
        await self.store.start()
        await self.presence.start()
        await self.broker.start(self)
        self._services.append(Every(IDLE_TTL_S / 3, self.keep_channels))
        self._started = True
        for service in self._services:
            service.start()
        if self.extension is not None:
            await self.extension.start()

    def spawn(self, aw: Awaitable[Any]) -> None:
        """Run a fire-and-forget task, holding a reference until it ends.

        The event loop keeps only weak references to tasks; one nobody holds can be collected
        half-way through (asyncio's documentation of create_task).
        """
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def attach(self, service: Service) -> None:
        """Run a service while the node runs: from `start` (at once if started already)."""
        self._services.append(service)
        if self._started:
            service.start()

    async def close(self) -> None:
        """Stop services, let background work finish (briefly), then close the backends."""
        for service in self._services:
            service.stop()
        self._services.clear()
        if self.extension is not None:
            await self.extension.close()
        self._started = False
        if self._background:
            await asyncio.wait(self._background, timeout=CLOSE_WAIT_S)
            for task in self._background:
                task.cancel()
        await self.presence.close()  # borrows the broker's Redis client: close it first
        await self.broker.close()
        await self.store.close()

    # -- channels -----------------------------------------------------------------------------

    def namespace(self, channel: str) -> NamespaceConfig:
        """The namespace of a (valid) channel name, or not_found."""
        ns_name, _ = protocol.split_channel(channel)
        ns = self.config.namespace(ns_name)
        if ns is None:
            raise ProtocolError(Code.NOT_FOUND, f"unknown namespace {ns_name!r}")
        return ns

    async def position(self, channel: str) -> Position:
        seeding = self._seeding.get(channel)
        if seeding is not None:  # its skipped offsets are not void yet: wait for them
            return await asyncio.shield(seeding)
        pos = await _guard(self.broker.position(channel))
        return pos if pos is not None else await self._seed(channel, self.namespace(channel))

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
        the store first), so no position is used twice; those skipped offsets are made void,
        so recovery across them need not wait. Without history a channel starts a new epoch.
        """
        start, stored, kept = Position(0, new_epoch()), None, None
        if ns.keeps_history:
            kept = await _guard(self.store.position(channel))
            stored = 0
            if kept is not None:
                stored = kept.offset + recovery.unstored_window(ns)
                await _guard(self.store.reserve(channel, kept.epoch, stored))
                start = Position(stored, kept.epoch)
        seeded = await _guard(self.broker.seed(channel, start, stored, channel_ttl(ns)))
        if seeded and kept is not None:
            skipped = list(range(kept.offset + 1, start.offset + 1))
            await _guard(self.store.void(channel, kept.epoch, skipped, ns.history_ttl_s))
        pos = await _guard(self.broker.position(channel))
        if pos is None:
            raise ProtocolError(Code.UNAVAILABLE, "the broker lost the channel's position")
        return pos

    # -- publishing ---------------------------------------------------------------------------

    async def publish(
        self, channel: str, data: Any, info: dict[str, str | None] | None
    ) -> Position:
        """Publish and, where the namespace keeps history, store before returning."""
        ns = self.namespace(channel)
        body = protocol.pub_body(channel, data, info, int(time.time() * 1000))
        if len(body) > self.config.server.max_message_bytes:
            raise ProtocolError(
                Code.LIMIT_EXCEEDED, "publication larger than max_message_bytes", status=413
            )
        window = recovery.unstored_window(ns) if ns.keeps_history else 0
        if ns.keeps_history and self._store_failed_at > time.monotonic() - STORE_DOUBT_S:
            await _guard(self.store.check())  # recently down: refuse before broadcasting
            self._store_failed_at = -math.inf
        pos = await self._sequence(channel, ns, body, window)
        if ns.keeps_history:
            keep = ns.history_size + window
            started = time.perf_counter()
            try:
                await self.store.append(
                    channel, pos.epoch, pos.offset, body, keep, ns.history_ttl_s
                )
            except StoreConflict as exc:
                raise ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}") from None
            except Unavailable as exc:
                self._store_failed_at = time.monotonic()
                raise ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}") from None
            self.broker.stored(channel, pos)
            waiting = self._stored_events.get(channel)
            if waiting is not None:
                waiting.event.set()
            self.stats.store_append.observe(time.perf_counter() - started)
        if ns.webhook_publications and self.extension is not None:
            await self.extension.published(channel, pos, body)
        self.stats.published += 1
        return pos

    async def _sequence(
        self, channel: str, ns: NamespaceConfig, body: bytes, window: int
    ) -> Position:
        """Have the broker number and send a publication, in the order publications of the
        channel came to this process.

        While one batch of a channel is at the broker, the channel's next publications gather
        and go together as the next batch (one broker call): a connection that pipelines its
        publishes keeps their order, and a busy channel costs one round trip per batch.
        """
        waiting = self._sequencing.get(channel)
        if waiting is not None:
            fut: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
            waiting.append((body, fut))
            return await fut
        self._sequencing[channel] = []
        done: list[Position] = []
        try:
            error = await self._sequence_batch(
                channel, ns, [body], window, lambda _, sent: done.extend(sent)
            )
        finally:
            self._next_batch(channel, ns, window)
        if error is not None:
            raise error
        return done[0]

    def _next_batch(self, channel: str, ns: NamespaceConfig, window: int) -> None:
        waiting = self._sequencing.get(channel)
        if not waiting:
            self._sequencing.pop(channel, None)
            return
        batch, rest = _take_batch(waiting)
        self._sequencing[channel] = rest
        self.spawn(self._run_batch(channel, ns, window, batch))

    async def _run_batch(
        self,
        channel: str,
        ns: NamespaceConfig,
        window: int,
        batch: list[tuple[bytes, asyncio.Future[Position]]],
    ) -> None:

        def sent(start: int, positions: list[Position]) -> None:
            for (_, fut), pos in zip(batch[start:], positions, strict=False):
                if not fut.done():
                    fut.set_result(pos)

        try:
            error = await self._sequence_batch(channel, ns, [b for b, _ in batch], window, sent)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(error or ProtocolError(Code.INTERNAL, "not published"))
        finally:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(ProtocolError(Code.UNAVAILABLE, "publishing was cancelled"))
            self._next_batch(channel, ns, window)

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
        while done < len(bodies):
            try:
                got = await self.broker.publish_many(channel, bodies[done:], window, ttl_s)
            except Backlogged as exc:
                if time.monotonic() > deadline:
                    return ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            except BrokerUnavailable as exc:
                return ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}")
            if got is not None:
                sent(done, got)
                done += len(got)
                deadline = time.monotonic() + BACKLOG_WAIT_S  # progress: wait afresh
                continue
            if seeded:
                return ProtocolError(Code.UNAVAILABLE, "the broker lost the channel's position")
            try:
                await self._seed(channel, ns)
            except ProtocolError as exc:
                return exc
            seeded = True
        return None

    # -- broker callbacks ---------------------------------------------------------------------

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

    def on_join_leave(self, channel: str, client_id: str, frame: bytes) -> None:
        self.stats.sent += self.hub.broadcast(channel, -1, wsframe.text(frame), exclude=client_id)

    def on_control(self, message: bytes) -> None:
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            log.warning("ignored a malformed control message")
            return
        if msg.get("op") == "disconnect":
            for client in self.hub.user_clients(str(msg.get("user"))):
                if msg.get("session") in (None, client.session):
                    client.disconnect(
                        int(msg.get("code", 4001)),
                        str(msg.get("reason", "")),
                        bool(msg.get("reconnect", False)),
                    )
        elif (handler := self.control_handlers.get(str(msg.get("op")))) is not None:
            handler(msg)
        elif self.extension is not None:
            self.extension.on_control(msg)

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

    def _resync(self, channel: str, since: Position, held: list[tuple[int, str, bytes]]) -> None:
        """Bring a channel's live subscribers from `since` up to date, holding new
        publications meanwhile; if that cannot be proven complete, end their subscriptions."""
        self._resyncing[channel] = held
        self._last[channel] = RESYNCING
        self.spawn(self._run_resync(channel, since))

    async def _run_resync(self, channel: str, since: Position) -> None:
        complete, reached = False, since
        pubs: recovery.Missed = []
        delay = random.uniform(0, 0.05)  # processes do not move in step
        for attempt in range(RESYNC_ATTEMPTS):
            await asyncio.sleep(delay)
            try:
                async with self._resync_slots:
                    ns = self.namespace(channel)
                    reached = await self.position(channel)
                    complete, pubs = await self._missed(channel, ns, since, reached)
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

    async def _missed(
        self, channel: str, ns: NamespaceConfig, since: Position, upto: Position
    ) -> tuple[bool, recovery.Missed]:
        """Recover a range, woken whenever this process stores one of the channel's
        publications (other processes' appends are polled for)."""
        waiting = self._stored_events.setdefault(channel, _Waiting())
        waiting.count += 1
        try:
            return await _guard(
                recovery.missed(
                    self.store, channel, ns, since, upto, self.hole_wait_s, waiting.event
                )
            )
        finally:
            waiting.count -= 1
            if not waiting.count:
                del self._stored_events[channel]

    def _end_subscriptions(self, channel: str, reason: str) -> None:
        """End every local subscription of `channel`: nothing here is delivered from now on."""
        self._last.pop(channel, None)
        frame = wsframe.text(protocol.unsubscribed_push(channel, reason))
        for client in self.hub.subscribers(channel):
            client.send(frame)
            self.spawn(self.unsubscribe(client, channel))

    # -- subscriptions ------------------------------------------------------------------------

    async def subscribe(
        self, client: Client, channel: str, since: Position | None
    ) -> tuple[dict[str, Any], Position]:
        """Subscribe and recover; returns the reply's result and the position it reaches.

        The subscription buffers live publications until `release`, which the caller invokes
        right after sending the reply, so nothing is missed, doubled or reordered.
        """
        ns = self.namespace(channel)
        if self.hub.is_subscribed(channel, client):
            raise ProtocolError(Code.BAD_REQUEST, f"already subscribed to {channel}")
        if self.hub.subscribe(channel, client, buffer=True):
            self._broker_subs[channel] = asyncio.ensure_future(self.broker.subscribe(channel))
        try:
            await _guard(asyncio.shield(self._broker_subs[channel]))
            pos = await self.position(channel)
            recovered, missed = True, list[tuple[int, bytes]]()
            if since is not None:
                recovered, missed = await self._missed(channel, ns, since, pos)
            if ns.presence:
                info = {"user": client.user, "name": client.name}
                await _guard(self.presence.add(channel, client.id, info))
        except BaseException:
            await self._leave(client, channel, ns, announce=False)
            raise
        if not self.hub.is_subscribed(channel, client):  # the connection closed meanwhile
            if ns.presence:
                self._clean_up(partial(self.presence.remove, channel, client.id))
            raise ProtocolError(Code.UNAVAILABLE, "the connection closed while subscribing")
        if ns.join_leave:
            self._announce("join", channel, client)
        result = {
            "offset": pos.offset,
            "epoch": pos.epoch,
            "recovered": recovered,
            "missed": protocol.pubs_fragment(missed),
        }
        return result, pos

    def release(self, client: Client, channel: str, pos: Position) -> None:
        """Deliver what arrived during subscribe (after `reached`) and go live.

        The first live subscriber of a channel sets how far the channel is delivered here,
        so a gap in the very next publication is noticed too.
        """
        held = self.hub.release(channel, client)
        if held is None:  # too much arrived meanwhile: recover from history instead
            client.send(wsframe.text(protocol.unsubscribed_push(channel, RESUBSCRIBE)))
            self.spawn(self.unsubscribe(client, channel))
            return
        reached = pos.offset
        for offset, frame in held:
            if offset < 0 or offset > reached:
                client.send(frame)
                reached = max(reached, offset)
        if channel not in self._last and self.hub.is_subscribed(channel, client):
            self._last[channel] = (pos.epoch, reached)

    async def unsubscribe(self, client: Client, channel: str) -> None:
        if self.hub.is_subscribed(channel, client):
            await self._leave(client, channel, self.config.namespace_of(channel), announce=True)

    async def _leave(
        self, client: Client, channel: str, ns: NamespaceConfig | None, announce: bool
    ) -> None:
        """End one subscription: the hub, the broker's when it was the last, presence, leave."""
        if self.hub.unsubscribe(channel, client):
            self._drop_broker_sub(channel)
        if ns is not None and ns.presence:
            self._clean_up(partial(self.presence.remove, channel, client.id))
        if announce and ns is not None and ns.join_leave:
            self._announce("leave", channel, client)

    def _drop_broker_sub(self, channel: str) -> None:
        self._broker_subs.pop(channel, None)
        self._last.pop(channel, None)
        self.spawn(_quietly(self.broker.unsubscribe(channel)))

    def _announce(self, kind: str, channel: str, client: Client) -> None:
        frame = protocol.join_leave_push(kind, channel, client.id, client.user)
        self.spawn(_quietly(self.broker.publish_join_leave(channel, client.id, frame)))

    def _clean_up(self, call: Callable[[], Awaitable[None]]) -> None:
        """Run a presence clean-up until it succeeds: an outage delays it, never skips it.

        Retries stop after the presence expiry, by when the entry has expired anyway.
        """
        self.spawn(_retry(call, self.config.redis.presence_ttl_s))

    async def client_gone(self, client: Client) -> None:
        """A connection closed: end its subscriptions, presence and join/leave."""
        channels = self.hub.channels_of(client)
        for channel in self.hub.remove_client(client):
            self._drop_broker_sub(channel)
        if not self.hub.client_count:
            self._emptied.set()
        for channel in channels:
            ns = self.config.namespace_of(channel)
            if ns is not None and ns.presence:
                self._clean_up(partial(self.presence.remove, channel, client.id))
            if ns is not None and ns.join_leave:
                self._announce("leave", channel, client)

    # -- draining -------------------------------------------------------------------------------

    def drainable(self) -> list[Drainable]:
        return list(self.hub.clients())

    async def wait_empty(self, timeout_s: float) -> bool:
        """Wait until no client is connected; False if some still are after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.hub.client_count:
            self._emptied.clear()
            try:
                await asyncio.wait_for(self._emptied.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return not self.hub.client_count
        return True

    # -- queries ------------------------------------------------------------------------------

    async def history(
        self, channel: str, since: int | None, limit: int, reverse: bool
    ) -> dict[str, Any]:
        ns = self.namespace(channel)
        if not ns.keeps_history:
            raise ProtocolError(Code.DISABLED, "history is off in this namespace")
        # Reading creates nothing: a channel never used answers offset 0 and epoch "".
        pos = await _guard(self.broker.position(channel)) or await _guard(
            self.store.position(channel)
        )
        if pos is None:
            return {"publications": [], "offset": 0, "epoch": ""}
        pubs = await _guard(self.store.history(channel, pos.epoch, since, limit, reverse))
        return {"publications": protocol.pubs_fragment(pubs), **pos.as_dict()}

    async def keep_channels(self) -> None:
        """Keep the broker's positions of every channel with subscribers here."""
        keep = []
        for channel in self.hub.channels():
            ns = self.config.namespace_of(channel)
            if ns is not None:
                keep.append((channel, channel_ttl(ns)))
        await _quietly(self.broker.keep(keep))

    async def presence_of(self, channel: str) -> dict[str, Any]:
        if not self.namespace(channel).presence:
            raise ProtocolError(Code.DISABLED, "presence is off in this namespace")
        return {"clients": await _guard(self.presence.get(channel))}

    async def disconnect_user(
        self, user: str, code: int, reason: str, session: str | None = None
    ) -> int:
        """Disconnect a user's connections on every process; returns how many were here."""
        here = len(self.hub.user_clients(user))
        msg = {
            "op": "disconnect",
            "user": user,
            "code": code,
            "reason": reason,
            "reconnect": False,
            "session": session,
        }
        await _guard(self.broker.publish_control(orjson.dumps(msg)))
        return here

    def process_stats(self) -> dict[str, Any]:
        return self.stats.snapshot(self)

    async def cluster_stats(self) -> list[dict[str, Any]]:
        """Every process's figures, gathered through the broker."""
        return await _guard(self.broker.cluster_stats(self.process_stats()))

    async def ready(self) -> dict[str, str]:
        """What is not ready, by service; empty when everything is reachable."""
        problems: dict[str, str] = {}
        for name, check in (("broker", self.broker.check), ("store", self.store.check)):
            try:
                await check()
            except Unavailable as exc:
                problems[name] = str(exc) or type(exc).__name__
        return problems


def _take_batch(
    waiting: list[tuple[bytes, asyncio.Future[Position]]],
) -> tuple[
    list[tuple[bytes, asyncio.Future[Position]]], list[tuple[bytes, asyncio.Future[Position]]]
]:
    """The next batch (at most MAX_BATCH publications and about MAX_BATCH_BYTES) and the rest."""
    size = 0
    for i, (body, _) in enumerate(waiting):
        size += len(body)
        if i and (i >= MAX_BATCH or size > MAX_BATCH_BYTES):
            return waiting[:i], waiting[i:]
    return waiting, []


async def _guard(aw: Awaitable[T]) -> T:
    """Await a broker or store call; its outage becomes an `unavailable` reply."""
    try:
        return await aw
    except Unavailable as exc:
        raise ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}") from None


async def _retry(call: Callable[[], Awaitable[None]], for_s: float) -> None:
    """Call until it succeeds, with capped jittered backoff, for at most `for_s` seconds."""
    deadline, delay = time.monotonic() + for_s, 0.05
    while True:
        try:
            await call()
            return
        except Unavailable as exc:
            if time.monotonic() + delay > deadline:
                log.warning("clean-up given up after %.0f s: %s", for_s, exc)
                return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0) * random.uniform(0.5, 1.0)


async def _quietly(aw: Awaitable[Any]) -> None:
    """Best-effort clean-up: an outage is logged, never raised into a closing connection."""
    try:
        await aw
    except Unavailable as exc:
        log.warning("clean-up skipped: %s", exc)
