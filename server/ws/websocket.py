"""One WebSocket connection after the upgrade: its socket, parser and outbox in one small object.

Why: a Tornado WebSocket keeps, per connection, a handler with its request and headers, an
IOStream with its buffers, a protocol object, and a coroutine suspended for the connection's
whole life (its Task, frames and futures): about 10 KB. Here a connection is this object
(__slots__, no __dict__), its FrameParser, and its registration in the event loop; Tornado is
done with it once the 101 response is out (server/ws/listener.py or server/ws/handler.py).

Reading: the socket's read interest is registered once and kept; each readable event is one
`recv`, and every complete frame received is dispatched. A message whose `on_message` returns
an awaitable is awaited before the next message is dispatched, and a burst of frames yields to
the loop now and then, as Tornado's receive loop does. Every frame the server sends, pongs and
the close frame included, goes through the outbox, in order.

Closing (RFC 6455 §5.5.1, §7): a client's close frame is answered with its code once every reply
queued before it is written; an invalid close code, invalid UTF-8 or any other violation fails
the connection with 1002, 1007 or 1009 after those replies. Then the TCP connection is closed
(what the client sent after is read and dropped first, so the kernel sends a FIN, not a reset).
A close the server starts waits `CLOSE_TIMEOUT_S` for the client's answer.

A process that dies without closing its connections (a crash, SIGKILL, the OOM killer) resets
them: the socket lingers with a zero timeout until it is closed here, where the usual close is
restored. Ended by the kernel with a FIN instead, each connection would leave a TIME_WAIT on
the server's side, and a client reconnecting from the same address and port (a proxy's pool,
a NAT, a load tester) gets an ACK instead of a refusal while the server is down: its connect
then waits out TCP's SYN retransmission (1, 3, 7 s) instead of its own reconnect delay. A
restart of 19,900 clients saw about 15,000 such retransmissions (docs/benchmarks.md, the
eighth round).

Read interest is kept while writes are pending and dropped only while a message is being handled
and more than `PAUSED_BUFFER` bytes have arrived behind it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

from server.ws import frame
from server.ws.frame import ProtocolViolation
from server.ws.outbox import ACCEPTING, CLOSED, Flusher, Outbox
from server.ws.parser import FrameParser
from server.ws.transport import TransportOwner

log = logging.getLogger("switchboard.ws")

#: Bytes asked of the socket per readable event (Tornado's read chunk size).
CHUNK = 65536
#: While a message is handled, keep reading until this many bytes wait behind it, then stop.
PAUSED_BUFFER = 65536
#: Yield to the loop after this much work in one go; each message counts as FRAME_COST bytes
#: more than its size (Tornado's _YIELD_THRESHOLD and _FRAME_YIELD_COST).
YIELD_THRESHOLD = 256 * 1024
FRAME_COST = 1024
#: How long a close the server started waits for the client's close frame (Tornado's figure).
CLOSE_TIMEOUT_S = 5.0
#: Reads of leftover input before hanging up: a client still sending gets a reset after these.
_DRAIN_READS = 16
#: SO_LINGER while the connection lives (a reset if the process dies), and for its close.
_RESET_IF_ORPHANED = struct.pack("ii", 1, 0)
_CLOSE_GRACEFULLY = struct.pack("ii", 0, 0)

# `_flags` bits above the outbox's own.
_READING = 0x10  # read interest registered
_BUSY = 0x20  # a message is being handled (or we yielded): hold further messages
_CLIENT_CLOSED = 0x40  # the client's close frame came, or it broke the protocol: ignore input
_SERVER_CLOSED = 0x80  # our close frame is queued
_HANG_UP = 0x100  # close TCP once the outbox is drained
_STARTED = 0x200  # an owner is attached


class WebSocket(Outbox):
    """Implements server.ws.transport.Transport for one connection; reports to its owner."""

    __slots__ = ("owner", "_parser", "_timer", "close_code", "close_reason")

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        flusher: Flusher,
        max_message_bytes: int,
        max_pending_bytes: int,
    ) -> None:
        super().__init__(sock, loop, max_pending_bytes, flusher)
        self.owner: TransportOwner | None = None
        self._parser = FrameParser(max_message_bytes)
        self._timer: asyncio.TimerHandle | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None

    def start(self, owner: TransportOwner, early: bytes = b"") -> None:
        """Attach the connection and start reading; `early` is what came with the handshake."""
        self.owner = owner
        self._flags |= _STARTED
        if self._flags & CLOSED:
            owner.on_closed()
            return
        self._flags |= _READING
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_IF_ORPHANED)
        self.loop.add_reader(self.fd, self._on_readable)
        if early:
            self._parser.feed(early)
            self._dispatch()

    # -- reading ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the peer, most often
            self._gone()
            return
        if not data:
            self._gone()
            return
        flags = self._flags
        if flags & _CLIENT_CLOSED:  # after its close frame, or its violation: read and dropped
            return
        self._parser.feed(data)
        if not flags & _BUSY:
            self._dispatch()
        elif self._parser.buffered >= PAUSED_BUFFER:
            self._set_reading(False)

    def _set_reading(self, reading: bool) -> None:
        flags = self._flags
        if flags & CLOSED or bool(flags & _READING) == reading:
            return
        if reading:
            self._flags = flags | _READING
            self.loop.add_reader(self.fd, self._on_readable)
        else:
            self._flags = flags & ~_READING
            self.loop.remove_reader(self.fd)

    def _dispatch(self) -> None:
        """Hand every buffered message to the owner, until one needs awaiting."""
        parser = self._parser
        work = 0
        while not self._flags & _CLIENT_CLOSED:
            try:
                message = parser.next()
            except ProtocolViolation as exc:
                self.fail(exc.code, exc.reason)
                return
            if message is None:
                return
            opcode, data = message
            pending = self._handle(opcode, data)
            if pending is not None:
                self._flags |= _BUSY
                pending.add_done_callback(self._resume)
                return
            work += FRAME_COST + len(data)
            if work >= YIELD_THRESHOLD:
                self._flags |= _BUSY
                self.loop.call_soon(self._resume, None)
                return

    def _handle(self, opcode: int, data: bytes) -> asyncio.Future[Any] | None:
        if opcode == frame.TEXT:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(1007, "invalid UTF-8")
                return None
            return self._deliver(text)
        if opcode == frame.BINARY:
            return self._deliver(data)
        if opcode == frame.PING_OPCODE:
            self.send(frame.encode(frame.PONG, data))
            if self.owner is not None:
                self.owner.on_ping()
            return None
        if opcode == frame.PONG:
            if self.owner is not None:
                self.owner.on_pong()
            return None
        try:
            code, reason = frame.parse_close(data)
        except ProtocolViolation as exc:
            self.fail(exc.code, exc.reason)
            return None
        self._flags |= _CLIENT_CLOSED
        self.close_code = code
        self.close_reason = reason
        self.close(code)  # the answer echoes the code (§5.5.1)
        return None

    def _deliver(self, message: str | bytes) -> asyncio.Future[Any] | None:
        """Give the owner a message; an error is logged and drops the connection (as Tornado)."""
        owner = self.owner
        if owner is None:
            return None
        try:
            result = owner.on_message(message)
        except Exception:
            log.exception("uncaught exception handling a message")
            self.abort()
            return None
        return None if result is None else asyncio.ensure_future(result)

    def _resume(self, done: asyncio.Future[Any] | None) -> None:
        if done is not None and not done.cancelled() and done.exception() is not None:
            log.error("message handler failed", exc_info=done.exception())
        self._flags &= ~_BUSY
        if self._flags & CLOSED:
            return
        self._dispatch()
        if not self._flags & _BUSY:
            self._set_reading(True)

    # -- closing ----------------------------------------------------------------------------

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (§7.1.7): queued frames, a close frame with `code`, then TCP close.

        Nothing the client sends after the violation is processed.
        """
        self._flags |= _CLIENT_CLOSED
        self.close(code, reason)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send the close frame after everything queued; end TCP once both sides have closed."""
        flags = self._flags
        if not flags & _SERVER_CLOSED:
            self._flags |= _SERVER_CLOSED
            if not self.finish(frame.close(code, reason)):
                self.abort()
                return
        if self._flags & CLOSED:
            return
        if self._flags & _CLIENT_CLOSED:
            if self.writing:
                self._flags |= _HANG_UP
            else:
                self._hang_up()
                return
        if self._timer is None:
            self._timer = self.loop.call_later(CLOSE_TIMEOUT_S, self.abort)

    def overflowed(self) -> None:
        if self.owner is not None:
            self.owner.too_slow()
        else:
            self.close(4009, "client too slow")

    def drained(self) -> None:
        if self._flags & _HANG_UP:
            self._hang_up()

    def _hang_up(self) -> None:
        """Close the TCP connection; what the client still sent is read first, so it gets a FIN."""
        if self._flags & CLOSED:
            return
        try:
            for _i in range(_DRAIN_READS):
                if not self.sock.recv(CHUNK):
                    break
        except OSError:  # nothing more to read (BlockingIOError), or the peer is gone
            pass
        self._gone()

    def abort(self) -> None:
        """Drop the TCP connection now, without a close frame."""
        self._gone()

    def _gone(self) -> None:
        """Close the socket, forget what is queued, and tell the owner (once)."""
        flags = self._flags
        if flags & CLOSED:
            return
        if flags & _READING:
            self.loop.remove_reader(self.fd)
        self._drop_writes()
        self._flags = (self._flags | CLOSED | _CLIENT_CLOSED | _SERVER_CLOSED) & ~(
            ACCEPTING | _READING
        )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._frames = None
        if flags & _STARTED:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _CLOSE_GRACEFULLY)
            except OSError:  # already reset by the peer
                pass
        self.sock.close()
        # Forgetting the owner breaks the one reference cycle (owner <-> WebSocket): a closed
        # connection is freed by reference counting, not left for a rare full collection.
        owner, self.owner = self.owner, None
        if flags & _STARTED and owner is not None:
            owner.on_closed()

    @property
    def closed(self) -> bool:
        return bool(self._flags & CLOSED)
