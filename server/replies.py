"""A connection's replies in command order while several of its commands run at once.

Why: a client that pipelines publishes should not wait a broker round trip per publish; but
replies must still come in the order the commands came. Each running command holds a slot in
the queue; a reply leaves once every reply before it has left.

>>> sent = []
>>> r = Replies(sent.append)
>>> a, b = r.start(), r.start()
>>> r.finish(b, b"second")
>>> sent
[]
>>> r.finish(a, b"first")
>>> sent
[b'first', b'second']
>>> r.running
0
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Slot:
    """One command's place in line; `frame` is its reply once it has one."""

    __slots__ = ("frame",)

    def __init__(self, frame: bytes | None = None) -> None:
        self.frame = frame


class Replies:
    __slots__ = ("_send", "_queue", "running", "_idle", "_room", "limit")

    def __init__(self, send: Callable[[bytes], None], limit: int = 1000) -> None:
        self._send = send
        self._queue: deque[Slot] = deque()
        #: Commands started and not finished.
        self.running = 0
        #: At most this many commands run at once (the reader waits for `room()` past it).
        self.limit = limit
        self._idle: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None

    def start(self) -> Slot:
        """A place in line for a command that starts now."""
        slot = Slot()
        self._queue.append(slot)
        self.running += 1
        return slot

    def finish(self, slot: Slot, frame: bytes) -> None:
        """The command of `slot` is done: send its reply, and every reply it held back."""
        slot.frame = frame
        self.running -= 1
        queue = self._queue
        while queue and queue[0].frame is not None:
            self._send(queue.popleft().frame)  # type: ignore[arg-type]
        if self._room is not None and self.running < self.limit:
            if not self._room.done():
                self._room.set_result(None)
            self._room = None
        if self._idle is not None and not self.running:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None

    def reply(self, frame: bytes) -> None:
        """A reply ready now (a command answered at once): after those still to come."""
        if self._queue:
            self._queue.append(Slot(frame))
        else:
            self._send(frame)

    @property
    def full(self) -> bool:
        return self.running >= self.limit

    def room(self) -> asyncio.Future[None]:
        """Done once fewer than `limit` commands run."""
        if self._room is None:
            self._room = asyncio.get_running_loop().create_future()
        return self._room

    def idle(self) -> asyncio.Future[None]:
        """Done once no command runs (every reply sent)."""
        fut = asyncio.get_running_loop().create_future()
        if not self.running:
            fut.set_result(None)
        elif self._idle is None:
            self._idle = fut
        else:
            fut = self._idle
        return fut
