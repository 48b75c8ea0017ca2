"""Per-connection output: frames are queued, coalesced and written once per loop iteration.

Each connection's unsent bytes are capped: a client that does not read goes over the cap and
is dropped (close 4009) instead of growing the server's memory or delaying anyone else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tornado.ioloop import IOLoop

Writer = Callable[[bytes], Awaitable[Any]]


class Outbox:
    __slots__ = ("_frames", "_queued", "_inflight", "_write", "_limit", "_on_overflow",
                 "_flusher", "_closed")

    def __init__(self, write: Writer, limit: int, on_overflow: Callable[[], None],
                 flusher: Flusher) -> None:
        self._frames: list[bytes] = []
        self._queued = 0
        self._inflight = 0
        self._write = write
        self._limit = limit
        self._on_overflow = on_overflow
        self._flusher = flusher
        self._closed = False

    @property
    def pending(self) -> int:
        """Bytes accepted but not yet taken by the kernel."""
        return self._queued + self._inflight

    def send(self, frame: bytes) -> None:
        if self._closed:
            return
        if not self._frames:
            self._flusher.mark(self)
        self._frames.append(frame)
        self._queued += len(frame)
        if self._queued + self._inflight > self._limit:
            self.close()
            self._on_overflow()

    def drain(self) -> None:
        """Write everything queued now, whatever is in flight: used just before a close."""
        if self._frames and not self._closed:
            data = b"".join(self._frames)
            self._frames.clear()
            self._queued = 0
            try:
                fut = self._write(data)
            except Exception:  # already closed: nothing left to tell the client
                return
            IOLoop.current().add_future(fut, lambda f: f.exception())

    def close(self) -> None:
        self._closed = True
        self._frames.clear()
        self._queued = 0

    def flush(self) -> None:
        if self._inflight or not self._frames or self._closed:
            return
        data = self._frames[0] if len(self._frames) == 1 else b"".join(self._frames)
        self._frames.clear()
        self._queued = 0
        self._inflight = len(data)
        try:
            fut = self._write(data)
        except Exception:  # the stream closed under us: the close handler cleans up
            self.close()
            return
        IOLoop.current().add_future(fut, self._written)

    def _written(self, fut: Any) -> None:
        self._inflight = 0
        if fut.exception() is not None:
            self.close()
            return
        self.flush()


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
