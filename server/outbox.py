"""Per-connection output: frames are queued, coalesced and written once per loop iteration.

The hot path of fan-out. A connection's frames of one loop iteration are joined into one write;
when Tornado's stream has nothing pending, that write goes straight to the socket, skipping the
stream's per-write Future. What the kernel does not take is left to the stream, whose buffer is
capped at `max_pending_bytes`: a client that does not read goes over the cap and is dropped
(close 4009) instead of growing the server's memory or delaying anyone else.
"""

from __future__ import annotations

from collections.abc import Callable

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError


class Outbox:
    __slots__ = ("_frames", "_stream", "_direct", "_flusher", "_on_overflow", "_closed")

    def __init__(
        self, stream: IOStream, limit: int, on_overflow: Callable[[], None], flusher: Flusher
    ) -> None:
        self._frames: list[bytes] = []
        self._stream = stream
        # Straight socket writes only for plain TCP: TLS streams must go through Tornado.
        self._direct = type(stream) is IOStream
        stream.max_write_buffer_size = limit
        self._flusher = flusher
        self._on_overflow = on_overflow
        self._closed = False

    def send(self, frame: bytes) -> None:
        if self._closed:
            return
        if not self._frames:
            self._flusher.mark(self)
        self._frames.append(frame)

    def close(self) -> None:
        self._closed = True
        self._frames.clear()

    def flush(self) -> None:
        """Write what this iteration queued; called by the Flusher (or before a close)."""
        frames = self._frames
        if not frames or self._closed:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        frames.clear()
        stream = self._stream
        if stream.closed():
            return
        if self._direct and not stream.writing():
            try:
                sent = stream.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:  # the peer is gone: the stream's read side will close the handler
                return
            if sent == len(data):
                return
            data = data[sent:]
        try:
            stream.write(data)
        except StreamBufferFullError:
            self.close()
            self._on_overflow()
        except StreamClosedError:
            self.close()


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
