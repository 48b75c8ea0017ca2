"""The node: coordinates hub, broker, store and presence in one process.

It owns the lifecycle and the subscriptions: the first local subscriber of a channel subscribes
the broker, the last one leaving unsubscribes it. Publishing (numbering, batching, storing) is the
sequencer's (server/sequencer.py); delivering what the broker sends, gapless, is the delivery's
(server/delivery.py), whose broker callbacks the node hands on as they are.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from server import protocol, recovery, sequencer
from server.broker.base import Broker
from server.config import Config, NamespaceConfig
from server.delivery import RESUBSCRIBE, Delivery
from server.expiry import Expiries
from server.hub import Hub
from server.observe.stats import Stats
from server.outage import guard, quietly, retry
from server.parts import Every, Extension, Service
from server.position import Position
from server.presence.base import Presence
from server.process.drain import Drainable
from server.protocol import Code, ProtocolError
from server.sequencer import Sequencer, channel_ttl
from server.store.base import Store
from server.unavailable import Unavailable
from server.ws import frame as wsframe

if TYPE_CHECKING:
    from server.client import Connection  # which imports this module

log = logging.getLogger("switchboard.node")

#: How long closing waits for background work (clean-ups, unsubscribes) to finish.
CLOSE_WAIT_S = 1.0


class Node:
    """One process's coordinator; built in server/app.py, shared by every connection."""

    def __init__(
        self,
        config: Config,
        hub: Hub[Connection],
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
        self._emptied = asyncio.Event()  # set when the last client left
        #: Set when the process starts draining: new connections go to other processes.
        self.draining = False
        #: Connections to close when their token expires.
        self.expiries = Expiries()
        self._services: list[Service] = []
        self._started = False
        self._background: set[asyncio.Future[Any]] = set()
        self.extension: Extension | None = None
        #: Handlers of control messages by `op`, beyond `disconnect` (server/sse/ adds one).
        self.control_handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.recoveries = recovery.Recoveries(store)
        self.sequencer = Sequencer(broker, store, self.stats, self.recoveries, self.spawn)
        self.delivery: Delivery[Connection] = Delivery(
            hub,
            self.stats,
            self.recoveries,
            config.namespace_of,
            self.sequencer.position,
            self.unsubscribe,
            self.spawn,
        )
        # The broker's callbacks that are the delivery's go straight to it: on_publication runs
        # once per publication, so the node adds no call in between.
        self.on_publication = self.delivery.on_publication
        self.on_reconnected = self.delivery.on_reconnected

    async def start(self) -> None:
        await self.store.start()
        await self.presence.start()
        await self.broker.start(self)
        self._services.append(Every(sequencer.IDLE_TTL_S / 3, self.keep_channels))
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

    # -- publishing ---------------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        info: dict[str, str | None] | None,
        ns: NamespaceConfig | None = None,
    ) -> Position:
        """Publish and, where the namespace keeps history, store before returning. `ns` is the
        channel's namespace, passed by commands that resolved it already (as every `ns` here)."""
        if ns is None:
            ns = self.config.namespace_of(channel)
        body = self.publication(channel, data, info)
        (published,) = await self.sequencer.publish_many(channel, ns, [body], here=True)
        return await self.acknowledge(channel, ns, body, published)

    def publication(self, channel: str, data: Any, info: dict[str, str | None] | None) -> bytes:
        """The body of a publication, refused when larger than `max_message_bytes`."""
        body = protocol.pub_body(channel, data, info, int(time.time() * 1000))
        if len(body) > self.config.server.max_message_bytes:
            raise ProtocolError(
                Code.LIMIT_EXCEEDED, "publication larger than max_message_bytes", status=413
            )
        return body

    async def acknowledge(
        self, channel: str, ns: NamespaceConfig, body: bytes, published: Awaitable[Position]
    ) -> Position:
        """The position of a publication queued by `sequencer.publish_many`, once it may be
        acknowledged: published, stored where the namespace keeps history, and queued for
        webhooks where the namespace sends them."""
        pos = await published
        if ns.webhook_publications and self.extension is not None:
            await self.extension.published(channel, pos, body)
        self.stats.published += 1
        return pos

    # -- broker callbacks (on_publication and on_reconnected: the delivery's) -----------------

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

    # -- subscriptions ------------------------------------------------------------------------

    async def subscribe(
        self,
        client: Connection,
        channel: str,
        since: Position | None,
        ns: NamespaceConfig | None = None,
    ) -> tuple[dict[str, Any], Position]:
        """Subscribe and recover; returns the reply's result and the position it reaches.

        The subscription buffers live publications until `release`, which the caller invokes
        right after sending the reply, so nothing is missed, doubled or reordered.
        """
        if ns is None:
            ns = self.config.namespace_of(channel)
        if self.hub.is_subscribed(channel, client):
            raise ProtocolError(Code.BAD_REQUEST, f"already subscribed to {channel}")
        if self.hub.subscribe(channel, client, buffer=True):
            self._broker_subs[channel] = asyncio.ensure_future(self.broker.subscribe(channel))
        try:
            broker_sub = self._broker_subs[channel]
            if not _succeeded(broker_sub):  # most subscribers join a channel already there
                await guard(asyncio.shield(broker_sub))
            pos = await self.sequencer.position(channel, ns)
            recovered, missed = True, list[tuple[int, bytes]]()
            if since is not None:
                recovered, missed = await guard(self.recoveries.missed(channel, ns, since, pos))
            if ns.presence:
                info = {"user": client.user, "name": client.name}
                await guard(self.presence.add(channel, client.id, info))
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

    def release(self, client: Connection, channel: str, pos: Position) -> None:
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
        if self.hub.is_subscribed(channel, client):
            self.delivery.live(channel, pos.epoch, reached)

    async def unsubscribe(self, client: Connection, channel: str) -> None:
        if self.hub.is_subscribed(channel, client):
            await self._leave(client, channel, self.config.namespace_of(channel), announce=True)

    async def _leave(
        self, client: Connection, channel: str, ns: NamespaceConfig, announce: bool
    ) -> None:
        """End one subscription: the hub, the broker's when it was the last, presence, leave."""
        if self.hub.unsubscribe(channel, client):
            self._drop_broker_sub(channel)
        if ns.presence:
            self._clean_up(partial(self.presence.remove, channel, client.id))
        if announce and ns.join_leave:
            self._announce("leave", channel, client)

    def _drop_broker_sub(self, channel: str) -> None:
        self._broker_subs.pop(channel, None)
        self.delivery.forget(channel)
        self.spawn(quietly(self.broker.unsubscribe(channel)))

    def _announce(self, kind: str, channel: str, client: Connection) -> None:
        frame = protocol.join_leave_push(kind, channel, client.id, client.user)
        self.spawn(quietly(self.broker.publish_join_leave(channel, client.id, frame)))

    def _clean_up(self, call: Callable[[], Awaitable[None]]) -> None:
        """Run a presence clean-up until it succeeds: an outage delays it, never skips it.

        Retries stop after the presence expiry, by when the entry has expired anyway.
        """
        self.spawn(retry(call, self.config.redis.presence_ttl_s))

    async def client_gone(self, client: Connection) -> None:
        """A connection closed: end its subscriptions, presence and join/leave."""
        channels = self.hub.channels_of(client)
        for channel in self.hub.remove_client(client):
            self._drop_broker_sub(channel)
        if not self.hub.client_count:
            self._emptied.set()
        for channel in channels:
            ns = self.config.namespace_of(channel)  # known: it was subscribed
            if ns.presence:
                self._clean_up(partial(self.presence.remove, channel, client.id))
            if ns.join_leave:
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
        self,
        channel: str,
        since: int | None,
        limit: int,
        reverse: bool,
        ns: NamespaceConfig | None = None,
    ) -> dict[str, Any]:
        if ns is None:
            ns = self.config.namespace_of(channel)
        if not ns.keeps_history:
            raise ProtocolError(Code.DISABLED, "history is off in this namespace")
        # Reading creates nothing: a channel never used answers offset 0 and epoch "".
        pos = await guard(self.broker.position(channel)) or await guard(
            self.store.position(channel)
        )
        if pos is None:
            return {"publications": [], "offset": 0, "epoch": ""}
        pubs = await guard(self.store.history(channel, pos.epoch, since, limit, reverse))
        return {"publications": protocol.pubs_fragment(pubs), **pos.as_dict()}

    async def keep_channels(self) -> None:
        """Keep the broker's positions of every channel with subscribers here."""
        ns_of = self.config.namespace_of
        keep = [(channel, channel_ttl(ns_of(channel))) for channel in self.hub.channels()]
        await quietly(self.broker.keep(keep))

    async def presence_of(self, channel: str, ns: NamespaceConfig | None = None) -> dict[str, Any]:
        if not (ns or self.config.namespace_of(channel)).presence:
            raise ProtocolError(Code.DISABLED, "presence is off in this namespace")
        return {"clients": await guard(self.presence.get(channel))}

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
        await guard(self.broker.publish_control(orjson.dumps(msg)))
        return here

    def process_stats(self) -> dict[str, Any]:
        return self.stats.snapshot(self)

    async def cluster_stats(self) -> list[dict[str, Any]]:
        """Every process's figures, gathered through the broker."""
        return await guard(self.broker.cluster_stats(self.process_stats()))

    async def ready(self) -> dict[str, str]:
        """What is not ready, by service; empty when everything is reachable."""
        problems: dict[str, str] = {}
        if self.draining:  # a load balancer sends new clients elsewhere
            problems["server"] = "draining"
        for name, check in (("broker", self.broker.check), ("store", self.store.check)):
            try:
                await check()
            except Unavailable as exc:
                problems[name] = str(exc) or type(exc).__name__
        return problems


def _succeeded(fut: asyncio.Future[Any]) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is None
