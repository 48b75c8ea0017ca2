"""The WebSocket receive path: one socket read per readable event, every whole frame in it parsed.

Why: Tornado's WebSocketProtocol13 reads each frame with two or three `IOStream.read_bytes`
calls, and each call ends with the stream dropping and re-adding its read interest in the event
loop (an `epoll_ctl` pair, plus the selector's bookkeeping): about a third of the server's CPU per
ping round trip. Here the socket's read interest is registered once, after the upgrade, and kept;
each readable event is one `recv`, and every complete frame in the bytes received is dispatched.

What stays Tornado's: the handshake, writes (server/outbox.py writes to the socket itself; close
and pong frames go through the stream), `close`, `_abort`, the handler callbacks and how their
errors are logged. Dispatch matches `WebSocketProtocol13._receive_frame_loop`: a message whose
`on_message` returns an awaitable is awaited before the next message is dispatched (a connection's
commands run one at a time), and a burst of frames yields to the loop as often as Tornado's does.

Read interest is kept while writes are pending (as Tornado's WebSocket does: it always has a read
outstanding) and dropped only while a command runs and more than `PAUSED_BUFFER` bytes have
arrived behind it. TLS streams and permessage-deflate keep Tornado's own reader: Switchboard
serves neither, and a TLS socket's bytes cannot be read around the stream.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from typing import Any

from tornado.concurrent import Future
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13

#: Bytes asked of the socket per readable event (Tornado's read chunk size).
CHUNK = 65536
#: While a command runs, keep reading until this many bytes wait behind it, then stop reading.
PAUSED_BUFFER = 65536
#: Yield to the loop after this much work in one go; each message counts as FRAME_COST bytes
#: more than its size (Tornado's _YIELD_THRESHOLD and _FRAME_YIELD_COST).
YIELD_THRESHOLD = 256 * 1024
FRAME_COST = 1024

_READ = IOLoop.READ
_WRITE = IOLoop.WRITE
_ERROR = IOLoop.ERROR
_DATA_OPCODES = (0x0, 0x1, 0x2)
_CONTROL_OPCODES = (0x8, 0x9, 0xA)


class ProtocolViolation(Exception):
    """The client broke RFC 6455. `code` is the close code to send first; None: just drop it."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FrameParser:
    """Client frames (RFC 6455, server side) from a byte stream fed in arbitrary pieces.

    `next()` returns whole messages: control frames as they come, data messages once their last
    fragment is in. A data message longer than `max_size` fails as soon as the header saying so
    is in, before its payload is buffered.

    >>> p = FrameParser(1024)
    >>> p.feed(b"\\x81\\x82\\x00\\x00\\x00\\x00h")
    >>> p.next() is None  # one payload byte still missing
    True
    >>> p.feed(b"i")
    >>> p.next()
    (1, b'hi')
    """

    __slots__ = ("max_size", "_buf", "_pos", "_frag", "_frag_opcode")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._frag: bytearray | None = None  # the fragments of a message so far
        self._frag_opcode = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a message."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            self._buf = data  # the common case: nothing left over, no copy
            self._pos = 0
        elif pos or type(buf) is bytes:
            rest = bytearray(memoryview(buf)[pos:])  # the partial frame, copied once
            rest += data
            self._buf = rest
            self._pos = 0
        else:
            buf += data  # a long frame arriving piece by piece: amortised appends

    def next(self) -> tuple[int, bytes] | None:
        """The next whole message as (opcode, unmasked payload), or None until more bytes come.

        Raises ProtocolViolation when the stream breaks the protocol; the parser is unusable after.
        """
        while True:
            buf = self._buf
            pos = self._pos
            end = len(buf)
            if end - pos < 2:
                return None
            b0 = buf[pos]
            b1 = buf[pos + 1]
            opcode = b0 & 0x0F
            if b0 & 0x70:
                raise ProtocolViolation(None, "reserved bits set")  # no extension was negotiated
            if not b1 & 0x80:
                raise ProtocolViolation(1002, "client frames must be masked")
            n = b1 & 0x7F
            head = pos + 2
            if opcode >= 0x8:
                if opcode not in _CONTROL_OPCODES:
                    raise ProtocolViolation(None, f"unknown opcode {opcode}")
                if n >= 126:
                    raise ProtocolViolation(None, "control frame payload over 125 bytes")
                if not b0 & 0x80:
                    raise ProtocolViolation(None, "fragmented control frame")
            else:
                if opcode not in _DATA_OPCODES:
                    raise ProtocolViolation(None, f"unknown opcode {opcode}")
                if n == 126:
                    if end - head < 2:
                        return None
                    n = int.from_bytes(buf[head : head + 2], "big")
                    head += 2
                elif n == 127:
                    if end - head < 8:
                        return None
                    n = int.from_bytes(buf[head : head + 8], "big")
                    head += 8
                if n + (len(self._frag) if self._frag is not None else 0) > self.max_size:
                    raise ProtocolViolation(1009, "message too big")
            start = head + 4
            stop = start + n
            if stop > end:  # the mask or payload is still to come
                return None
            if type(buf) is bytes:
                payload = _websocket_mask(buf[head:start], buf[start:stop])
            else:
                view = memoryview(buf)
                payload = _websocket_mask(bytes(view[head:start]), bytes(view[start:stop]))
                view.release()
            if stop == end:
                self._buf = b""  # an idle connection holds no buffer
                self._pos = 0
            else:
                self._pos = stop
            if opcode >= 0x8:
                return opcode, payload
            fin = b0 & 0x80
            if opcode:
                if self._frag is not None:
                    raise ProtocolViolation(None, "new message inside a fragmented one")
                if fin:
                    return opcode, payload
                self._frag = bytearray(payload)
                self._frag_opcode = opcode
            else:
                if self._frag is None:
                    raise ProtocolViolation(None, "continuation frame without a message")
                self._frag += payload
                if fin:
                    message = bytes(self._frag)
                    self._frag = None
                    return self._frag_opcode, message


class ReaderProtocol(WebSocketProtocol13):
    """WebSocketProtocol13 whose receive loop is FrameParser fed by one `recv` per event."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parser = FrameParser(self.params.max_message_size)
        self._busy = False  # a command is running (or we yielded): hold further messages
        self._reading = True  # read interest wanted
        self._gone: Future[None] | None = None

    async def _receive_frame_loop(self) -> None:
        stream = self.stream
        if self._compression_options is not None or type(stream) is not IOStream:
            await super()._receive_frame_loop()
            return
        self._gone = Future()
        try:
            # Frames sent right behind the handshake may already sit in the stream's buffer.
            while stream._read_buffer_size:
                self._parser.feed(await stream.read_bytes(stream._read_buffer_size))
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
            self._abort()
        finally:
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
            self.stream._handle_events(sock, events & ~_READ)
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
                if exc.code is not None:
                    self.close(exc.code, exc.reason)
                self._abort()
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

    def _handle(self, opcode: int, data: bytes) -> Awaitable[None] | None:
        if opcode == 0x1:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self.close(1007, "invalid UTF-8")
                self._abort()
                return None
            return self._run_callback(self.handler.on_message, text)
        try:
            return self._handle_message(opcode, data)  # binary, close, ping, pong: Tornado's
        except ValueError:  # a close reason that is not UTF-8
            self._abort()
            return None

    def _resume(self, _: object) -> None:
        self._busy = False
        if self.stream.closed():
            return
        self._dispatch()
        if not self._busy and not self._reading:
            self._set_reading(True)
