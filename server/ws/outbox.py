"""Per-connection output: frames are queued, coalesced and written once per loop iteration.

The hot path of fan-out. A connection's frames of one loop iteration are joined into one write;
when Tornado's stream has nothing pending, that write goes straight to the socket, skipping the
stream's per-write Future. What the kernel does not take is left to the stream, whose buffer is
capped at `max_pending_bytes`: a client that does not read goes over the cap and is dropped
(close 4009) instead of growing the server's memory or delaying anyone else.

Frames are never cut: writes always end on a frame boundary. When the cap is reached, nothing
more is queued except the rest of a frame the kernel took only part of (so the cap may be passed
by at most one frame, which is in memory anyway), and the close frame follows that last whole
frame. Only a stream already closed gets no close frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError

from server.ws import frame


class Closer(Protocol):
    """The connection's closing handshake, which the outbox's `close` starts."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


class Outbox:
    """Implements server.ws.transport.Transport for one WebSocket connection."""

    __slots__ = (
        "_frames",
        "_stream",
        "_direct",
        "_flusher",
        "_ws",
        "_on_overflow",
        "_open",
        "_clean",
    )

    def __init__(
        self,
        ws: Closer,
        stream: IOStream,
        limit: int,
        flusher: Flusher,
        on_overflow: Callable[[], None],
    ) -> None:
        self._frames: list[bytes] = []
        self._stream = stream
        # Straight socket writes only for plain TCP: TLS streams must go through Tornado.
        self._direct = type(stream) is IOStream
        stream.max_write_buffer_size = limit
        self._flusher = flusher
        self._ws = ws
        self._on_overflow = on_overflow
        self._open = True  # frames are accepted: no close frame queued, no overflow
        self._clean = True  # what was written ends on a frame boundary

    def send(self, frame: bytes) -> None:
        if not self._open:
            return
        if not self._frames:
            self._flusher.mark(self)
        self._frames.append(frame)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start the closing handshake: the close frame goes after every frame queued so far."""
        self._ws.close(code, reason)

    def flush(self) -> None:
        """Write what this iteration queued; called by the Flusher (or before a close)."""
        frames = self._frames
        if not frames or not self._open:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        stream = self._stream
        if stream.closed():
            frames.clear()
            return
        sent = 0
        if self._direct and not stream.writing():
            try:
                sent = stream.socket.send(data)
            except BlockingIOError:
                pass
            except OSError:  # the peer is gone: the stream's read side will close the handler
                frames.clear()
                return
            if sent == len(data):
                frames.clear()
                return
        try:
            stream.write(data[sent:] if sent else data)
        except StreamBufferFullError:
            self._overflow(sent)
        except StreamClosedError:
            self._open = False
        frames.clear()

    def _overflow(self, sent: int) -> None:
        """What is unsent does not fit under the cap: finish the frame the kernel took part of,
        queue nothing more, and tell the connection (which closes after that frame)."""
        self._open = False
        end = 0
        for f in self._frames:
            end += len(f)
            if end > sent:
                taken = len(f) - (end - sent)  # bytes of f the kernel took
                if taken:
                    self._stream.max_write_buffer_size = None  # one frame's rest, never cut
                    try:
                        self._stream.write(memoryview(f)[taken:])
                    except StreamClosedError:
                        self._clean = False
                break
        self._frames.clear()
        self._on_overflow()

    def finish(self, code: int | None, reason: str | None) -> bool:
        """Write what is queued, then the close frame, and accept nothing after it.

        False when no close frame can follow without cutting a frame: the caller drops the
        connection instead. The close frame alone may go over the cap (a few bytes).
        """
        if self._open:
            self.flush()
            self._open = False
            self._frames.clear()
        stream = self._stream
        if not self._clean or stream.closed():
            return False
        stream.max_write_buffer_size = None
        try:
            stream.write(frame.close(code, reason))
        except StreamClosedError:
            return False
        return True

    def drop(self) -> None:
        """The connection is gone: forget what is queued and accept nothing more."""
        self._open = False
        self._frames.clear()


class Flusher:
    """Flushes every outbox that got frames during this loop iteration, in one callback."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Outbox] = []
        self._scheduled = False

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            IOLoop.current().add_callback(self._flush)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._scheduled = False
        for outbox in dirty:
            outbox.flush()
