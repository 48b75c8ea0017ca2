"""The receive path and closing handshake: one socket read per readable event, every frame parsed.

Why: Tornado's WebSocketProtocol13 reads each frame with two or three `IOStream.read_bytes`
calls, and each call ends with the stream dropping and re-adding its read interest in the event
loop (an `epoll_ctl` pair, plus the selector's bookkeeping): about a third of the server's CPU per
ping round trip. Here the socket's read interest is registered once, after the upgrade, and kept;
each readable event is one `recv`, and every complete frame in the bytes received is dispatched.

What stays Tornado's: the handshake, the handler callbacks and how their errors are logged.
Dispatch matches Tornado's receive loop: a message whose `on_message` returns an awaitable is
awaited before the next message is dispatched (a connection's commands run one at a time), and
a burst of frames yields to the loop as often as Tornado's does. Every frame the server sends,
pongs and the close frame included, goes through the connection's Outbox, in order.

Closing (RFC 6455 §5.5.1, §7): a client's close frame is answered with its code once every reply
queued before it is written; an invalid close code, invalid UTF-8 or any other violation fails
the connection with 1002, 1007 or 1009 after those replies. Then the TCP connection is closed
(what the client sent after is read and dropped first, so the kernel sends a FIN, not a reset).
A close the server starts waits `CLOSE_TIMEOUT_S` for the client's answer.

Read interest is kept while writes are pending (as Tornado's WebSocket does: it always has a read
outstanding) and dropped only while a command runs and more than `PAUSED_BUFFER` bytes have
arrived behind it.
"""

from __future__ import annotations

import socket
from typing import Any

from tornado.concurrent import Future
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from server.ws import frame, seam
from server.ws.frame import ProtocolViolation
from server.ws.outbox import Outbox
from server.ws.parser import FrameParser

#: Bytes asked of the socket per readable event (Tornado's read chunk size).
CHUNK = 65536
#: While a command runs, keep reading until this many bytes wait behind it, then stop reading.
PAUSED_BUFFER = 65536
#: Yield to the loop after this much work in one go; each message counts as FRAME_COST bytes
#: more than its size (Tornado's _YIELD_THRESHOLD and _FRAME_YIELD_COST).
YIELD_THRESHOLD = 256 * 1024
FRAME_COST = 1024
#: How long a close the server started waits for the client's close frame (Tornado's figure).
CLOSE_TIMEOUT_S = 5.0
#: Reads of leftover input before hanging up: a client still sending gets a reset after these.
_DRAIN_READS = 16

_READ = IOLoop.READ
_WRITE = IOLoop.WRITE
_ERROR = IOLoop.ERROR


class ReaderProtocol(seam.Protocol):
    """Tornado's WebSocketProtocol13 with FrameParser fed by one `recv` per event.

    The handler gives it its Outbox (`outbox`) in `open`, before any frame is read.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outbox: Outbox | None = None
        self._parser = FrameParser(self.params.max_message_size)
        self._busy = False  # a command is running (or we yielded): hold further messages
        self._reading = True  # read interest wanted
        self._gone: Future[None] | None = None
        self._close_timer: object | None = None

    async def receive(self) -> None:
        stream = self.stream
        self._gone = Future()
        try:
            # Frames sent right behind the handshake may already sit in the stream's buffer.
            pending = seam.buffered(stream)
            while pending is not None:
                self._parser.feed(await pending)
                pending = seam.buffered(stream)
            if stream.closed():
                return
            # After the upgrade nothing else reads this stream: its close callback is ours, and
            # so are its events. Write events still go to the stream (see _on_events).
            stream.set_close_callback(self._on_stream_closed)
            io_loop = stream.io_loop
            io_loop.remove_handler(stream.socket)
            io_loop.add_handler(stream.socket, self._on_events, self._interest())
            self._dispatch()
            await self._gone
        except StreamClosedError:
            self.abort()
        finally:
            self._stop_timer()
            if self.outbox is not None:
                self.outbox.drop()
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    def _on_stream_closed(self) -> None:
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def _interest(self) -> int:
        return _ERROR | (_READ if self._reading else 0) | (_WRITE if self.stream.writing() else 0)

    def _set_reading(self, reading: bool) -> None:
        self._reading = reading
        if not self.stream.closed():
            self.stream.io_loop.update_handler(self.stream.socket, self._interest())

    def _on_events(self, sock: socket.socket, events: int) -> None:
        if events & _READ:
            self._on_readable(sock)
        if events & ~_READ and not self.stream.closed():
            # The stream's pending writes. It sets its own interest from its own state, which
            # knows of no reader here: put ours back (a no-op when nothing changed).
            seam.stream_events(self.stream, sock, events & ~_READ)
            if not self.stream.closed():
                self.stream.io_loop.update_handler(sock, self._interest())

    def _on_readable(self, sock: socket.socket) -> None:
        if not self._reading:  # the stream re-armed reads while we hold back: disarm again
            self._set_reading(False)
            return
        try:
            data = sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # reset by the peer, most often
            self.stream.close(exc_info=exc)
            return
        if not data:
            self.stream.close()
            return
        if self.client_terminated:  # after its close frame, or its violation: read and dropped
            return
        self._parser.feed(data)
        if not self._busy:
            self._dispatch()
        elif self._parser.buffered >= PAUSED_BUFFER:
            self._set_reading(False)

    def _dispatch(self) -> None:
        """Hand every buffered message to the handler, until one needs awaiting."""
        parser = self._parser
        work = 0
        while not self.client_terminated:
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
                self._busy = True
                pending.add_done_callback(self._resume)
                return
            work += FRAME_COST + len(data)
            if work >= YIELD_THRESHOLD:
                self._busy = True
                self.stream.io_loop.add_callback(self._resume, None)
                return

    def _handle(self, opcode: int, data: bytes) -> Future[None] | None:
        if opcode == frame.TEXT:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(1007, "invalid UTF-8")
                return None
            return self.run_callback(self.handler.on_message, text)
        if opcode == frame.BINARY:
            return self.run_callback(self.handler.on_message, data)
        if opcode == frame.PING_OPCODE:
            if self.outbox is not None:
                self.outbox.send(frame.encode(frame.PONG, data))
            self.run_callback(self.handler.on_ping, data)
            return None
        if opcode == frame.PONG:
            return self.run_callback(self.handler.on_pong, data)
        try:
            code, reason = frame.parse_close(data)
        except ProtocolViolation as exc:
            self.fail(exc.code, exc.reason)
            return None
        self.client_terminated = True
        self.close_code = code
        self.close_reason = reason
        self.close(code)  # the answer echoes the code (§5.5.1)
        return None

    def _resume(self, _: object) -> None:
        self._busy = False
        if self.stream.closed():
            return
        self._dispatch()
        if not self._busy and not self._reading:
            self._set_reading(True)

    # -- closing ----------------------------------------------------------------------------

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (§7.1.7): queued frames, a close frame with `code`, then TCP close.

        Nothing the client sends after the violation is processed.
        """
        self.client_terminated = True
        self.close(code, reason)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send the close frame after everything queued; end TCP once both sides have closed.

        Replaces Tornado's, which writes the close frame around the outbox (before replies
        still queued in it) and closes the stream with its writes still pending.
        """
        if not self.server_terminated:
            self.server_terminated = True
            if self.outbox is None or not self.outbox.finish(code, reason):
                self.abort()
                return
        stream = self.stream
        if stream.closed():
            self._stop_timer()
            return
        if self.client_terminated:
            if stream.writing():
                stream.write(b"").add_done_callback(self._hang_up)
            else:
                self._hang_up()
        if self._close_timer is None and not stream.closed():
            self._close_timer = stream.io_loop.call_later(CLOSE_TIMEOUT_S, self.abort)

    def _hang_up(self, _: object = None) -> None:
        """Close the TCP connection; what the client still sent is read first, so it gets a FIN."""
        stream = self.stream
        if stream.closed():
            return
        try:
            for _i in range(_DRAIN_READS):
                if not stream.socket.recv(CHUNK):
                    break
        except OSError:  # nothing more to read (BlockingIOError), or the peer is gone
            pass
        stream.close()

    def _stop_timer(self) -> None:
        if self._close_timer is not None:
            self.stream.io_loop.remove_timeout(self._close_timer)
            self._close_timer = None
