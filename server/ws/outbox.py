"""Per-connection output: frames are queued, coalesced and written once per loop iteration
(or once per `[server] write_delay_ms`, see Flusher).

The hot path of fan-out. A connection's frames of one loop iteration are joined into one write
straight to its socket. What the kernel does not take waits in the connection's own buffer,
capped at `max_pending_bytes`: a client that does not read goes over the cap and is dropped
(close 4009) instead of growing the server's memory or delaying anyone else.

Frames are never cut: writes always end on a frame boundary. When the cap is reached, nothing
more is queued except the rest of a frame the kernel took only part of (so the cap may be passed
by at most one frame, which is in memory anyway), and the close frame follows that last whole
frame.

Nagle's algorithm stays on (as on Tornado's WebSocket connections after their handshake): a
push written while the client has not acknowledged the last one waits for that ACK and leaves
with whatever followed, which saves the kernel most of its per-frame work in a fan-out. A reply
is different: the client waits for it, and may wait for it before acknowledging anything, so a
flush that carries one pushes it out at once (TCP_NODELAY set and cleared: the kernel sends
what it held).

Memory: an idle connection holds no list and no buffer. One frame queued is held as itself;
a second makes a list; a write the kernel took whole leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import socket

#: `Outbox._flags` bits (the WebSocket adds its own above these).
ACCEPTING = 0x1  # frames are accepted: no close frame queued, no overflow
WRITING = 0x2  # bytes wait in `_unsent` and write interest is registered
CLOSED = 0x4  # the socket is closed: nothing more is read or written
URGENT = 0x8  # this iteration's frames include a reply: TCP must not hold them back


class Outbox:
    """The write half of one WebSocket connection (server.ws.websocket.WebSocket is the rest)."""

    __slots__ = ("sock", "fd", "loop", "_frames", "_unsent", "_limit", "_flusher", "_flags")

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        limit: int,
        flusher: Flusher,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        #: Frames of this loop iteration: None, one frame, or a list of them.
        self._frames: bytes | list[bytes] | None = None
        #: What the kernel has not taken yet; always ends on a frame boundary.
        self._unsent: bytearray | None = None
        self._limit = limit
        self._flusher = flusher
        self._flags = ACCEPTING

    def send(self, data: bytes) -> None:
        """Queue one encoded frame (server.ws.frame): written at the end of this iteration, or
        after the Flusher's delay."""
        if not self._flags & ACCEPTING:
            return
        queued = self._frames
        if queued is None:
            self._frames = data
            self._flusher.mark(self)
        elif isinstance(queued, list):
            queued.append(data)
        else:
            self._frames = [queued, data]

    def reply(self, data: bytes) -> None:
        """Queue a frame the client is waiting for: this iteration's frames leave at once."""
        if self._flags & ACCEPTING:
            self.send(data)
            self._flags |= URGENT
            self._flusher.hurry(self)

    def flush(self) -> None:
        """Write what this iteration queued; called by the Flusher (or before a close)."""
        queued = self._frames
        if queued is None:
            return
        self._frames = None
        flags = self._flags
        if not flags & ACCEPTING:
            return
        data = queued if isinstance(queued, bytes) else b"".join(queued)
        if self._unsent is not None:
            self._keep(queued, data, 0)
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the peer is gone: the read side notices and closes
            return
        if flags & URGENT:
            self._flags = flags & ~URGENT
            self._push()
        if sent != len(data):
            self._keep(queued, data, sent)

    def _push(self) -> None:
        """Have TCP send what Nagle's algorithm holds back now (and keep the algorithm on)."""
        sock = self.sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        except OSError:  # the peer is gone: the read side notices and closes
            pass

    def _keep(self, queued: bytes | list[bytes], data: bytes, sent: int) -> None:
        """Hold what the kernel did not take, within the cap (never cutting a frame)."""
        unsent = self._unsent
        waiting = len(unsent) if unsent is not None else 0
        if waiting + len(data) - sent > self._limit:
            self._overflow(queued, sent)
            return
        if unsent is None:
            self._unsent = bytearray(memoryview(data)[sent:])
            self._want_writes()
        else:
            unsent += data

    def _overflow(self, queued: bytes | list[bytes], sent: int) -> None:
        """What is unsent does not fit under the cap: finish the frame the kernel took part of,
        queue nothing more, and tell the connection (which closes after that frame)."""
        self._flags &= ~ACCEPTING
        if sent:  # only when nothing was waiting: `queued` went to the kernel directly
            end = 0
            for f in queued if isinstance(queued, list) else (queued,):
                end += len(f)
                if end > sent:
                    taken = len(f) - (end - sent)  # bytes of f the kernel took
                    if taken:
                        self._unsent = bytearray(memoryview(f)[taken:])
                        self._want_writes()
                    break
        self.overflowed()

    def overflowed(self) -> None:
        """The client stopped reading: its unsent bytes passed the cap (the WebSocket acts)."""
        raise NotImplementedError

    def finish(self, close_frame: bytes) -> bool:
        """Write what is queued, then `close_frame`, and accept nothing after it.

        False when the socket is closed already. The close frame alone may go over the cap.
        """
        if self._flags & ACCEPTING:
            self.flush()
            self._flags &= ~ACCEPTING
        self._frames = None
        if self._flags & CLOSED:
            return False
        if self._unsent is not None:
            self._unsent += close_frame
            return True
        try:
            sent = self.sock.send(close_frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False
        if sent != len(close_frame):
            self._unsent = bytearray(close_frame[sent:])
            self._want_writes()
        return True

    @property
    def writing(self) -> bool:
        """Bytes are waiting for the kernel to take them."""
        return self._unsent is not None

    def _want_writes(self) -> None:
        if not self._flags & (WRITING | CLOSED):
            self._flags |= WRITING
            self.loop.add_writer(self.fd, self._on_writable)

    def _on_writable(self) -> None:
        unsent = self._unsent
        if unsent is None or self._flags & CLOSED:
            return
        try:
            sent = self.sock.send(unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the peer is gone: the read side notices and closes
            self._drop_writes()
            return
        del unsent[:sent]
        if not unsent:
            self._drop_writes()
            self.drained()

    def drained(self) -> None:
        """Everything queued reached the kernel (the WebSocket may be waiting to hang up)."""

    def _drop_writes(self) -> None:
        """Forget unsent bytes and write interest (the socket is still open)."""
        self._unsent = None
        if self._flags & WRITING:
            self._flags &= ~WRITING
            self.loop.remove_writer(self.fd)


class Flusher:
    """Flushes every outbox that got frames during this loop iteration, in one callback.

    With a write delay (`[server] write_delay_ms`), frames wait until `delay_s` after the first
    of them, so what a connection is sent meanwhile leaves in one write: fewer `send` calls
    than deliveries when a channel publishes faster than that, for up to `delay_s` of added
    latency. Replies never wait; an outbox with one leaves at the end of the iteration.
    """

    __slots__ = ("_dirty", "_delay")

    def __init__(self, delay_s: float = 0.0) -> None:
        self._dirty: list[Outbox] = []
        self._delay = delay_s

    def mark(self, outbox: Outbox) -> None:
        if not self._dirty:
            if self._delay:
                asyncio.get_running_loop().call_later(self._delay, self._flush)
            else:
                asyncio.get_running_loop().call_soon(self._flush)
        self._dirty.append(outbox)

    def hurry(self, outbox: Outbox) -> None:
        """`outbox` holds a reply: it leaves at the end of this iteration, delay or not. It stays
        marked; the delayed flush finds nothing queued, or what was queued after the reply."""
        if self._delay:
            asyncio.get_running_loop().call_soon(outbox.flush)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush()
