"""One client connection's protocol state: commands in, replies and pushes out.

Transport-free: the WebSocket handler gives it frames and an outbox to write to, so every rule of
the protocol (limits, permissions, error replies) lives here and is tested without a socket.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server import auth, commands, protocol
from server.auth import ANONYMOUS, Identity
from server.commands import HANDLERS, Handler
from server.config import NamespaceConfig
from server.limits import StrikeCounter, TokenBucket
from server.node import Node
from server.position import Position
from server.protocol import Close, Code, Command, FrameError, ProtocolError
from server.replies import Replies, Slot
from server.ws import frame as wsframe
from server.ws.transport import Transport

log = logging.getLogger("switchboard.client")


class State(enum.Enum):
    """Where a connection is in its life: commands run only while OPEN."""

    OPEN = "open"
    CLOSING = "closing"  # told to go (disconnect push and close sent), socket still there
    GONE = "gone"  # the socket closed: out of the hub, presence and timers dropped


class Connection:
    """One client's connection, whatever carries it (WebSocket or SSE). Modules that need only
    part of it name that part: the hub's `Addressable`, keep-alive's `Pingable`, drain's
    `Drainable`, the transport's `TransportOwner`."""

    __slots__ = (
        "id",
        "user",
        "name",
        "identity",
        "node",
        "transport",
        "send",
        "parse",
        "_bucket",
        "_publish_bucket",
        "alive",
        "_strikes",
        "state",
        "_expiry",
        "_replies",
        "_publishing",
        "_closing",
        "__weakref__",
    )

    def __init__(
        self,
        node: Node,
        transport: Transport,
        identity: Identity = ANONYMOUS,
        parse: Callable[[str | bytes], Command] = protocol.parse_command,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.node = node
        self.transport = transport
        #: Queue one encoded frame: one call per delivery (the transport's own bound method).
        self.send = transport.send
        #: Decode one frame into a Command: JSON, or MessagePack (server.ws.subprotocol).
        self.parse = parse
        self.identity = identity
        self.user = identity.user
        self.name = identity.name
        limits = node.config.limits
        self._bucket = TokenBucket(limits.command_rate, limits.command_burst)
        self._publish_bucket: TokenBucket | None = None  # made at the first publish
        self._strikes: StrikeCounter | None = None  # made at the first strike: most never
        self.state = State.OPEN
        #: Set by any frame or pong from the client; the keep-alive sweep resets it.
        self.alive = True
        #: The second its token expires in (server.expiry), while watched.
        self._expiry: int | None = None
        #: Replies held in command order while pipelined commands run (made at the first one).
        self._replies: Replies | None = None
        #: Publishes read since the last ran: published together (`_queue_publish`).
        self._publishing: list[tuple[Slot, Command]] | None = None
        #: A policy close waiting for those replies, once one is due.
        self._closing: asyncio.Future[None] | None = None

    @property
    def session(self) -> str | None:
        return self.identity.session

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self) -> None:
        """Register with the hub and greet the client."""
        self.node.hub.add_client(self)
        self.node.stats.connections_total += 1
        log.debug("connected", extra={"client": self.id, "user": self.user})
        self._watch_expiry()
        self.send_json(
            {
                "push": "hello",
                "client": self.id,
                "user": self.user,
                "node": self.node.id,
                "ping_interval": round(self.node.config.server.ping_interval_s),
                "version": protocol.VERSION,
            }
        )

    async def closed(self) -> None:
        """The socket is gone (or going): drop every subscription, presence entry and timer."""
        if self.state is State.GONE:
            return
        self.state = State.GONE
        if self._expiry is not None:
            self.node.expiries.forget(self, self._expiry)
        await self.node.client_gone(self)

    def send_json(self, payload: bytes | dict[str, Any]) -> None:
        if isinstance(payload, dict):
            payload = protocol.dumps(payload)
        self.send(wsframe.text(payload))

    def reply(self, payload: bytes) -> None:
        """Send a reply: the client is waiting for it, so the transport sends it at once."""
        self.transport.reply(wsframe.text(payload))

    def disconnect(
        self, code: int, reason: str, reconnect: bool, delay_ms: int | None = None
    ) -> None:
        """Tell the client why (and, reconnecting, how long to wait), then close with `code`."""
        if self.state is not State.OPEN:
            return
        self.state = State.CLOSING
        # Policy closes (4xxx) are worth an operator's eye; shutdown's 1001 for everyone is not.
        log.log(
            logging.INFO if code >= 4000 else logging.DEBUG,
            "disconnecting: %s",
            reason,
            extra={"client": self.id, "user": self.user, "code": code},
        )
        self.send_json(protocol.disconnect_push(code, reason, reconnect, delay_ms))
        self.transport.close(code, reason)
        # Leave the hub now: the socket itself may take seconds to finish its close handshake.
        self.node.spawn(self.closed())

    def authenticate(self, identity: Identity) -> None:
        """The client proved who it is (`auth`): it is that user from now on."""
        self.identity = identity
        self.name = identity.name
        self.node.hub.set_user(self, identity.user)
        self._watch_expiry()

    def go_live(self, cmd_id: int, channel: str, result: dict[str, Any], pos: Position) -> None:
        """Reply to a subscribe, then deliver what arrived meanwhile (unless closed by now)."""
        if self.state is not State.OPEN:
            return
        self.reply(protocol.reply_ok(cmd_id, result))
        self.node.release(self, channel, pos)

    def _watch_expiry(self) -> None:
        expiries = self.node.expiries
        if self._expiry is not None:
            expiries.forget(self, self._expiry)
            self._expiry = None
        exp = self.identity.expires_at
        if exp is not None:
            self._expiry = expiries.watch(self, exp + auth.LEEWAY_S)

    def expired(self) -> None:
        """Its token expired (server.expiry)."""
        self._expiry = None
        self.disconnect(Close.UNAUTHORIZED, "token expired", False)

    # -- the transport's callbacks (server.ws.transport.TransportOwner) -----------------------

    def on_ping(self) -> None:
        self.control_frame()  # pings count toward the command rate

    def on_pong(self) -> None:
        self.control_frame()

    def on_closed(self) -> None:
        self.node.spawn(self.closed())

    def too_slow(self) -> None:
        """The client stopped reading: its unsent bytes passed max_pending_bytes."""
        self.disconnect(Close.TOO_SLOW, "client too slow", True)

    # -- commands -----------------------------------------------------------------------------

    def handle(self, frame: str | bytes) -> Awaitable[None] | None:
        """Handle one frame; returns an awaitable when the command needs I/O."""
        if self.state is not State.OPEN:
            return None
        self.alive = True
        self.node.stats.received += 1
        try:
            cmd = self.parse(frame)
        except FrameError as exc:
            return self._refuse(exc.cmd_id, Code.BAD_REQUEST, exc.message)
        if not self._bucket.take():
            self._answer(protocol.reply_error(cmd.id, Code.LIMIT_EXCEEDED, "command rate exceeded"))
            return self._close_after_replies(Close.POLICY, "command rate exceeded", True)
        if cmd.op == "ping":
            self._answer(protocol.reply_ok(cmd.id, {}))
            return None
        if cmd.op == "publish" and not self._publish_budget(len(frame)):
            self._answer(
                protocol.reply_error(cmd.id, Code.LIMIT_EXCEEDED, "publish bytes rate exceeded")
            )
            return None
        if cmd.op == "publish":
            return self._queue_publish(cmd)
        handler = HANDLERS.get(cmd.op)
        if handler is None:
            return self._refuse(cmd.id, Code.UNKNOWN_OP, f"unknown op {cmd.op!r}")
        if self._replies is not None and self._replies.running:
            return self._after_running(handler, cmd)
        return self._run(handler, cmd)

    on_message = handle

    def control_frame(self) -> None:
        """A WebSocket ping or pong from the client: it costs a command, so a flood of them
        is closed with 4008 like a flood of commands."""
        if self.state is not State.OPEN:
            return
        self.alive = True
        if not self._bucket.take():  # after the replies of pipelined commands, as in `handle`
            self._close_after_replies(Close.POLICY, "command rate exceeded", True)

    def _publish_budget(self, size: int) -> bool:
        """Charge a publish frame's bytes to `[limits] publish_bytes_per_s` (with its burst)."""
        bucket = self._publish_bucket
        if bucket is None:
            limits = self.node.config.limits
            bucket = TokenBucket(limits.publish_bytes_per_s, limits.publish_bytes_burst)
            self._publish_bucket = bucket
        return bucket.spend(size)

    async def _run(self, handler: Handler, cmd: Command) -> None:
        started = time.perf_counter()
        closing = None
        try:
            result = await handler(self, cmd)
        except ProtocolError as exc:
            closing = self._refuse(cmd.id, exc.code, exc.message)
        except Exception:
            log.exception("command %s failed", cmd.op, extra={"client": self.id})
            closing = self._refuse(cmd.id, Code.INTERNAL, "internal error")
        else:
            if result is not None:
                self.reply(protocol.reply_ok(cmd.id, result))
        finally:
            self.alive = True  # pongs are not read while a command runs: it was busy, not dead
            self.node.stats.observe_command(cmd.op, time.perf_counter() - started)
        if closing is not None:
            await closing

    # -- pipelining: publishes run at once; replies keep command order ----------------------

    def _queue_publish(self, cmd: Command) -> Awaitable[None] | None:
        """Publish alongside the commands still running; the reader waits only past the limit.
        The publishes of one read go together: one task, one sequencer call per channel."""
        replies = self._replies
        if replies is None:
            replies = self._replies = Replies(self.transport.reply, MAX_RUNNING)
        if self._publishing is None:
            self._publishing = []
            self.node.spawn(self._publish_queued())
        self._publishing.append((replies.start(), cmd))
        return replies.room() if replies.full else None

    async def _publish_queued(self) -> None:
        """Check every queued publish, queue each channel's at the sequencer in one call, then
        reply to each as it is acknowledged (Replies keeps them in command order)."""
        batch, self._publishing = self._publishing or [], None
        replies = self._replies
        assert replies is not None
        node = self.node
        started = time.perf_counter()
        closing: list[Awaitable[None]] = []

        def answer(slot: Slot, reply: bytes, code: Code | None = None) -> None:
            node.stats.observe_command("publish", time.perf_counter() - started)
            replies.finish(slot, wsframe.text(reply))
            strike = self._strike(code) if code is not None else None
            if strike is not None:
                closing.append(strike)  # awaited last: it waits for these very replies

        def refused(slot: Slot, cmd: Command, exc: Exception) -> None:
            if isinstance(exc, ProtocolError):
                answer(slot, protocol.reply_error(cmd.id, exc.code, exc.message), exc.code)
            else:
                log.error("command publish failed", exc_info=exc, extra={"client": self.id})
                answer(slot, protocol.reply_error(cmd.id, Code.INTERNAL, "internal error"))

        queued: list[tuple[Slot, Command, str, NamespaceConfig, bytes]] = []
        by_channel: dict[str, list[int]] = {}
        for slot, cmd in batch:
            try:
                channel, ns, body = commands.publication(self, cmd)
            except Exception as exc:
                refused(slot, cmd, exc)
                continue
            by_channel.setdefault(channel, []).append(len(queued))
            queued.append((slot, cmd, channel, ns, body))
        published: dict[int, Awaitable[Position] | Exception] = {}
        here = len(by_channel) == 1  # one channel: sent from this task (publish_many)
        for channel, indexes in by_channel.items():
            ns = queued[indexes[0]][3]
            try:
                futures = await node.sequencer.publish_many(
                    channel, ns, [queued[i][4] for i in indexes], here
                )
            except Exception as exc:
                published.update(dict.fromkeys(indexes, exc))
            else:
                published.update(zip(indexes, futures, strict=True))
        for i, (slot, cmd, channel, ns, body) in enumerate(queued):
            try:
                pub = published[i]
                if isinstance(pub, Exception):
                    raise pub
                pos = await node.acknowledge(channel, ns, body, pub)
            except Exception as exc:
                refused(slot, cmd, exc)
            else:
                answer(slot, protocol.reply_ok(cmd.id, pos.as_dict()))
        if closing:
            await closing[0]  # the same wait for every strike (_close_after_replies)

    async def settled(self) -> None:
        """Done once every command received so far has its reply queued."""
        if self._replies is not None:
            await self._replies.idle()

    async def _after_running(self, handler: Handler, cmd: Command) -> None:
        """A command that changes the connection's state (auth, subscriptions) runs alone:
        after the pipelined ones before it, and before any after it."""
        await self.settled()
        await self._run(handler, cmd)

    def _answer(self, payload: bytes) -> None:
        """A reply known at once: in line behind the replies of commands still running."""
        if self._replies is not None:
            self._replies.reply(wsframe.text(payload))
        else:
            self.reply(payload)

    def _refuse(self, cmd_id: int | None, code: Code, message: str) -> Awaitable[None] | None:
        """Reply with an error; malformed frames count as strikes towards a 4008 close (an
        awaitable: the close waits for the replies before it)."""
        if self.state is not State.OPEN:
            return None
        self._answer(protocol.reply_error(cmd_id, code, message))
        return self._strike(code)

    def _strike(self, code: Code) -> Awaitable[None] | None:
        if self.state is not State.OPEN or code not in (Code.BAD_REQUEST, Code.UNKNOWN_OP):
            return None
        if self._strikes is None:
            self._strikes = StrikeCounter(self.node.config.limits.malformed_per_minute)
        if self._strikes.strike():
            return self._close_after_replies(Close.POLICY, "too many malformed frames", False)
        return None

    def _close_after_replies(
        self, code: int, reason: str, reconnect: bool
    ) -> Awaitable[None] | None:
        """Disconnect for a policy breach, after the replies of the commands before it; until
        then nothing more is read (the reader waits for the awaitable)."""
        if self._replies is None or not self._replies.running:
            self.disconnect(code, reason, reconnect)
            return None
        if self._closing is None:  # one wait however many breaches arrive meanwhile
            self._closing = asyncio.ensure_future(
                self._disconnect_when_settled(code, reason, reconnect)
            )
        return self._closing

    async def _disconnect_when_settled(self, code: int, reason: str, reconnect: bool) -> None:
        await self.settled()
        self.disconnect(code, reason, reconnect)


#: Commands of one connection running at once, at most; past it the connection is not read.
MAX_RUNNING = 1000
