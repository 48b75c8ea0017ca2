"""The node: coordinates hub, broker, store and presence in one process. One delivery path.

Whatever the broker, every publication reaches local subscribers through `on_publication`: it
is encoded into one WebSocket frame there and that frame is written to every subscriber. The
first local subscriber of a channel subscribes the broker; the last one leaving unsubscribes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

import orjson

from server import protocol
from server.broker.base import Broker, BrokerUnavailable
from server.config import Config, NamespaceConfig
from server.hub import Hub, Subscriber
from server.position import Position, new_epoch
from server.presence.base import Presence
from server.protocol import Code, ProtocolError
from server.stats import Stats
from server.store.base import Store, StoreUnavailable
from server.ws import frame as wsframe

log = logging.getLogger("switchboard.node")
T = TypeVar("T")

#: How long recovery waits for publications that were sent but are still being stored.
RECOVERY_WAIT_S = 1.0
#: Reason of the `unsubscribed` push when a subscription cannot stay gapless.
RESUBSCRIBE = "insufficient_state"


class Client(Subscriber, Protocol):
    """What the node needs of a connection beyond the hub's view of it."""

    name: str | None

    def disconnect(self, code: int, reason: str, reconnect: bool) -> None: ...


class Service(Protocol):
    """A periodic task that lives as long as the node."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Node:
    def __init__(
        self,
        config: Config,
        hub: Hub,
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
        self._last: dict[str, tuple[str, int]] = {}
        self._services: list[Service] = []
        self._background: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        await self.store.start()
        await self.presence.start()
        await self.broker.start(self)

    def spawn(self, aw: Awaitable[Any]) -> None:
        """Run a fire-and-forget task, holding a reference until it ends.

        The event loop keeps only weak references to tasks; one nobody holds can be collected
        half-way through (asyncio's documentation of create_task).
        """
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def attach(self, service: Service) -> None:
        """Start a service now and stop it when the node closes."""
        self._services.append(service)
        service.start()

    async def close(self) -> None:
        for service in self._services:
            service.stop()
        self._services.clear()
        await self.broker.close()
        await self.presence.close()
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
        pos = await _guard(self.broker.position(channel))
        return pos if pos is not None else await self._seed(channel)

    async def _seed(self, channel: str) -> Position:
        """Give the broker a position for a channel it knows nothing of, from the store."""
        stored = None
        if self.namespace(channel).keeps_history:
            stored = await _guard(self.store.position(channel))
        await _guard(self.broker.seed(channel, stored or Position(0, new_epoch())))
        pos = await _guard(self.broker.position(channel))
        if pos is None:
            raise ProtocolError(Code.UNAVAILABLE, "the broker lost the channel's position")
        return pos

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, channel: str, data: Any, info: dict[str, str] | None) -> Position:
        """Publish and, where the namespace keeps history, store before returning."""
        ns = self.namespace(channel)
        body = protocol.pub_body(channel, data, info, int(time.time() * 1000))
        if len(body) > self.config.server.max_message_bytes:
            raise ProtocolError(
                Code.LIMIT_EXCEEDED, "publication larger than max_message_bytes", status=413
            )
        pos = await _guard(self.broker.publish(channel, body))
        if pos is None:
            await self._seed(channel)
            pos = await _guard(self.broker.publish(channel, body))
            if pos is None:
                raise ProtocolError(Code.UNAVAILABLE, "the broker lost the channel's position")
        if ns.keeps_history:
            await _guard(
                self.store.append(
                    channel, pos.epoch, pos.offset, body, ns.history_size, ns.history_ttl_s
                )
            )
        self.stats.published += 1
        return pos

    # -- broker callbacks ---------------------------------------------------------------------

    def on_publication(self, channel: str, offset: int, epoch: str, body: bytes) -> None:
        last = self._last.get(channel)
        self._last[channel] = (epoch, offset)
        if last is not None and (last[0] != epoch or last[1] + 1 != offset):
            if last[0] == epoch and offset <= last[1]:
                return  # a duplicate from a reconnecting broker: already delivered
            log.warning("gap in %s: %s after %s", channel, (epoch, offset), last)
            self._end_subscriptions(channel, RESUBSCRIBE)
            return
        frame = wsframe.text(protocol.pub_push(offset, body))
        self.stats.sent += self.hub.broadcast(channel, offset, frame)

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
                if msg.get("session") in (None, getattr(client, "session", None)):
                    client.disconnect(
                        int(msg.get("code", 4001)),
                        str(msg.get("reason", "")),
                        bool(msg.get("reconnect", False)),
                    )

    def on_reconnected(self) -> None:
        """The broker came back: subscriptions that may have missed something must recover.

        Every channel with local subscribers, not only those that saw a publication: one
        that saw none yet has no last offset to notice the gap by.
        """
        self._last.clear()
        for channel in self.hub.channels():
            self._end_subscriptions(channel, RESUBSCRIBE)

    def _end_subscriptions(self, channel: str, reason: str) -> None:
        frame = wsframe.text(protocol.unsubscribed_push(channel, reason))
        for client in self.hub.subscribers(channel):
            client.send(frame)
            self.spawn(self.unsubscribe(client, channel))  # type: ignore[arg-type]

    # -- subscriptions ------------------------------------------------------------------------

    async def subscribe(
        self, client: Client, channel: str, since: Position | None
    ) -> tuple[dict[str, Any], int]:
        """Subscribe and recover; returns the reply's result and the offset it reaches.

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
            recovered, missed = True, []
            if since is not None:
                recovered, missed = await self._recover(channel, ns, since, pos)
            if ns.presence:
                await _guard(
                    self.presence.add(
                        channel, client.id, {"user": client.user, "name": client.name}
                    )
                )
        except BaseException:
            await self._leave_hub(client, channel)
            raise
        if not self.hub.is_subscribed(channel, client):  # the connection closed meanwhile
            if ns.presence:
                await _quietly(self.presence.remove(channel, client.id))
            raise ProtocolError(Code.UNAVAILABLE, "the connection closed while subscribing")
        if ns.join_leave:
            self._announce("join", channel, client)
        reached = missed[-1][0] if missed else pos.offset
        result = {
            "offset": max(reached, pos.offset),
            "epoch": pos.epoch,
            "recovered": recovered,
            "missed": protocol.pubs_fragment(missed),
        }
        return result, reached

    def release(self, client: Client, channel: str, reached: int) -> None:
        """Deliver what arrived during subscribe (after `reached`) and go live."""
        for offset, frame in self.hub.release(channel, client):
            if offset < 0 or offset > reached:
                client.send(frame)

    async def _recover(
        self, channel: str, ns: NamespaceConfig, since: Position, pos: Position
    ) -> tuple[bool, list[tuple[int, bytes]]]:
        if since.epoch != pos.epoch or since.offset > pos.offset:
            return False, []
        if since.offset == pos.offset:
            return True, []
        if not ns.keeps_history:
            return False, []
        want = pos.offset - since.offset
        deadline = time.monotonic() + RECOVERY_WAIT_S
        while True:
            pubs = await _guard(
                self.store.history(
                    channel, pos.epoch, since.offset, min(want, ns.history_size), False
                )
            )
            complete = len(pubs) == want and pubs[0][0] == since.offset + 1
            # The newest ones may be sent but not yet stored: their publisher is writing them.
            tail_missing = not pubs or pubs[-1][0] < pos.offset
            if complete or not tail_missing or time.monotonic() > deadline:
                return complete, pubs
            await asyncio.sleep(0.02)

    async def unsubscribe(self, client: Client, channel: str) -> None:
        if not self.hub.is_subscribed(channel, client):
            return
        await self._leave_hub(client, channel)
        ns = self.config.namespace_of(channel)
        if ns is not None and ns.join_leave:
            self._announce("leave", channel, client)

    async def _leave_hub(self, client: Client, channel: str) -> None:
        if self.hub.unsubscribe(channel, client):
            self._drop_broker_sub(channel)
        ns = self.config.namespace_of(channel)
        if ns is not None and ns.presence:
            await _quietly(self.presence.remove(channel, client.id))

    def _drop_broker_sub(self, channel: str) -> None:
        self._broker_subs.pop(channel, None)
        self._last.pop(channel, None)
        self.spawn(_quietly(self.broker.unsubscribe(channel)))

    def _announce(self, kind: str, channel: str, client: Client) -> None:
        frame = protocol.join_leave_push(kind, channel, client.id, client.user)
        self.spawn(_quietly(self.broker.publish_join_leave(channel, client.id, frame)))

    async def client_gone(self, client: Client) -> None:
        """A connection closed: end its subscriptions, presence and join/leave."""
        channels = self.hub.channels_of(client)
        for channel in self.hub.remove_client(client):
            self._drop_broker_sub(channel)
        for channel in channels:
            ns = self.config.namespace_of(channel)
            if ns is not None and ns.presence:
                await _quietly(self.presence.remove(channel, client.id))
            if ns is not None and ns.join_leave:
                self._announce("leave", channel, client)

    # -- queries ------------------------------------------------------------------------------

    async def history(
        self, channel: str, since: int | None, limit: int, reverse: bool
    ) -> dict[str, Any]:
        ns = self.namespace(channel)
        if not ns.keeps_history:
            raise ProtocolError(Code.DISABLED, "history is off in this namespace")
        pos = await self.position(channel)
        pubs = await _guard(self.store.history(channel, pos.epoch, since, limit, reverse))
        return {"publications": protocol.pubs_fragment(pubs), **pos.as_dict()}

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
            except (BrokerUnavailable, StoreUnavailable) as exc:
                problems[name] = str(exc) or type(exc).__name__
        return problems


async def _guard(aw: Awaitable[T]) -> T:
    """Await a broker or store call; its outage becomes an `unavailable` reply."""
    try:
        return await aw
    except (BrokerUnavailable, StoreUnavailable) as exc:
        raise ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}") from None


async def _quietly(aw: Awaitable[Any]) -> None:
    """Best-effort clean-up: an outage is logged, never raised into a closing connection."""
    try:
        await aw
    except (BrokerUnavailable, StoreUnavailable) as exc:
        log.warning("clean-up skipped: %s", exc)
