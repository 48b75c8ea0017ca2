"""One SSE session: the Transport of a Connection, outliving the HTTP responses that stream it.

A WebSocket is one TCP connection both ways; here frames to the client travel on an event
stream (a long GET response) and commands arrive in POSTs. A proxy may cut the stream, and the
browser then reconnects it with `Last-Event-ID`; so the session keeps the frames it sent (the
replay buffer, bounded by `max_pending_bytes` as a WebSocket's unsent bytes are) and, while no
stream is attached, waits `grace_s` for one before it ends like a closed socket would.

Bounds, as over WebSocket (docs/protocol.md):
- A frame can be replayed while it is among the newest `limit` bytes of events. A frame pushed
  out of the buffer before any stream carried it is lost to the client: that is a client too
  slow (4009), as is a stream whose unsent bytes pass `limit`.
- Posted commands are handled in the order posted, as a WebSocket's frames are read
  (publishes pipelined, every reply in command order: server/replies.py); at most `limit`
  bytes of them wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from server.protocol import Close
from server.sse import events
from server.ws import frame as wsframe

if TYPE_CHECKING:
    from server.client import Connection


class Stream(Protocol):
    """An HTTP response carrying a session's events (handlers/sse.py)."""

    def write(self, data: bytes) -> None:
        """Write and flush `data` on the response."""

    def unsent(self) -> int:
        """Bytes written but not yet taken by the socket."""

    def end(self) -> None:
        """Finish the response."""


class Session:
    """Implements server.ws.transport.Transport for one SSE client."""

    def __init__(
        self,
        session_id: str,
        limit: int,
        grace_s: float,
        spawn: Callable[[Awaitable[Any]], None],
        on_end: Callable[[Session], None],
    ) -> None:
        self.id = session_id
        self._idb = session_id.encode()
        self.conn: Connection | None = None
        self._limit = limit
        self._grace_s = grace_s
        self._spawn = spawn
        self._on_end = on_end
        self._events: deque[tuple[int, bytes]] = deque()
        self._held = 0  # bytes in _events
        self._seq = 0  # the last frame's number
        self._carried = 0  # the last frame handed to a stream
        self._stream: Stream | None = None
        self._out: list[bytes] = []  # this loop iteration's bytes for the stream
        self._scheduled = False
        self._grace: asyncio.TimerHandle | None = None
        self._closed = False  # a close event is queued, or the session expired
        self._commands: deque[bytes] = deque()
        self._queued = 0  # bytes in _commands
        self._running = False

    @property
    def attached(self) -> bool:
        return self._stream is not None

    @property
    def ended(self) -> bool:
        return self._closed

    # -- Transport --------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Queue one frame (a WebSocket frame, server.ws.frame) as an event."""
        if self._closed:
            return
        payload = wsframe.text_payload(frame)
        if payload is None:  # the keep-alive's ping: the stream's health is its own
            if self.conn is not None:
                self.conn.alive = True
            if self._stream is not None:
                self._write(events.KEEPALIVE)
            return
        self._seq += 1
        event = events.message(self._idb, self._seq, payload)
        self._events.append((self._seq, event))
        self._held += len(event)
        if self._stream is not None:
            self._carried = self._seq
            self._write(event)
        while self._held > self._limit and len(self._events) > 1:
            seq, old = self._events.popleft()
            self._held -= len(old)
            if seq > self._carried:
                self.too_slow()
                return
        if self._stream is not None and self._stream.unsent() > self._limit:
            self.too_slow()

    def reply(self, frame: bytes) -> None:
        """Queue a reply: an event like any other (every event leaves at the next loop turn)."""
        self.send(frame)

    def close(self, code: int, reason: str) -> None:
        """End the session: the close event follows every frame queued so far."""
        if self._closed:
            return
        self._closed = True
        self._cancel_grace()
        self._commands.clear()
        if self._stream is not None:
            self._write(events.close(code, reason))
        self._on_end(self)

    def hang_up(self) -> None:
        """The client ended the session (`DELETE /sse`), as a WebSocket client closes."""
        self.close(1000, "client closed")
        if self.conn is not None:
            self._spawn(self.conn.closed())

    def too_slow(self) -> None:
        if self.conn is not None:
            self.conn.disconnect(Close.TOO_SLOW, "client too slow", True)
        else:
            self.close(Close.TOO_SLOW, "client too slow")

    # -- streams ----------------------------------------------------------------------------

    def attach(self, stream: Stream, after: int) -> bool:
        """Carry the events after number `after` (0: all) on `stream` from now on.

        False when some of them are gone (or `after` was never sent): the session cannot go
        on without a gap, and the caller ends it.
        """
        if self._closed or after > self._seq:
            return False
        first = self._events[0][0] if self._events else self._seq + 1
        if after + 1 < first:
            return False
        old, self._stream = self._stream, None
        if old is not None:
            self._flush_to(old)
            old.end()
        self._cancel_grace()
        self._out.clear()
        self._stream = stream
        stream.write(events.session(self.id))
        replay = [event for seq, event in self._events if seq > after]
        if replay:
            self._write(b"".join(replay))
        self._carried = self._seq
        return True

    def detach(self, stream: Stream) -> None:
        """The stream's response ended; wait `grace_s` for another before ending."""
        if stream is not self._stream:
            return
        self._stream = None
        self._out.clear()
        if not self._closed:
            loop = asyncio.get_running_loop()
            self._grace = loop.call_later(self._grace_s, self.expire)

    def expire(self) -> None:
        """No stream came back in time: the client is gone, as if its socket had closed."""
        self._grace = None
        if self._closed:
            return
        self._closed = True
        self._commands.clear()
        self._on_end(self)
        if self.conn is not None:
            self._spawn(self.conn.closed())

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _write(self, data: bytes) -> None:
        """Queue bytes for the stream; one write per loop iteration."""
        self._out.append(data)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        stream = self._stream
        if stream is not None:
            self._flush_to(stream)
            if self._closed:
                self._stream = None
                stream.end()

    def _flush_to(self, stream: Stream) -> None:
        out, self._out = self._out, []
        if out:
            stream.write(out[0] if len(out) == 1 else b"".join(out))

    # -- commands ---------------------------------------------------------------------------

    def post(self, frames: list[bytes]) -> bool:
        """Queue commands to run in order; False when more than `limit` bytes would wait."""
        size = sum(len(f) for f in frames)
        if self._queued + size > self._limit:
            return False
        if self._closed:
            return True  # the stream tells the client why; its commands are moot
        self._commands.extend(frames)
        self._queued += size
        if not self._running:
            self._running = True
            self._spawn(self._run())
        return True

    async def _run(self) -> None:
        """Hand queued commands to the connection in order, as a WebSocket's reader does:
        waiting whenever it returns an awaitable."""
        try:
            while self._commands and self.conn is not None:
                frame = self._commands.popleft()
                self._queued -= len(frame)
                pending = self.conn.handle(frame)
                if pending is not None:
                    await pending
        finally:
            self._running = False
            self._queued = sum(len(f) for f in self._commands)
