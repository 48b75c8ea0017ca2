"""Events waiting to be sent: the interface, and the in-memory queue for `memory:` stores.

A queue hands out only the *head* of each key (its oldest event), leased to one sender for a
while: so events of one user or channel go out one at a time and in order, and an event whose
sender died is sent again once its lease has run out (at least once). A head that failed waits
for its retry, and the events behind it wait with it.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from dataclasses import dataclass

from server.webhooks.events import Event


@dataclass(slots=True)
class Queued:
    """An event handed to a sender, with how often it was tried already."""

    event: Event
    attempts: int


class EventQueue(ABC):
    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def put(self, event: Event) -> None:
        """Keep an event until `done`; raises StoreUnavailable when it cannot be kept."""

    @abstractmethod
    async def claim(self, now: float, lease_s: float, limit: int) -> list[Queued]:
        """Up to `limit` due heads of their keys, each leased to the caller for `lease_s`."""

    @abstractmethod
    async def done(self, event: Event) -> None:
        """Forget a sent (or given up) event; the next of its key becomes due."""

    @abstractmethod
    async def retry(self, event: Event, at: float, attempts: int) -> None:
        """Try a failed event again at `at` (seconds since the epoch)."""

    @abstractmethod
    async def next_due(self) -> float | None:
        """When the next event may be due (seconds since the epoch), or None if none waits."""

    @abstractmethod
    async def size(self) -> int: ...


@dataclass(slots=True)
class _Entry:
    event: Event
    next_at: float
    attempts: int = 0

    def __lt__(self, other: _Entry) -> bool:
        return self.event.seq < other.event.seq


class MemoryQueue(EventQueue):
    """The queue of one process, lost on exit: for `[mongo] url = "memory:"` and tests."""

    def __init__(self) -> None:
        self._keys: dict[str, list[_Entry]] = {}  # key -> its events by seq

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def put(self, event: Event) -> None:
        bisect.insort(self._keys.setdefault(event.key, []), _Entry(event, event.created))

    async def claim(self, now: float, lease_s: float, limit: int) -> list[Queued]:
        heads = sorted(e[0] for e in self._keys.values() if e[0].next_at <= now)[:limit]
        for head in heads:
            head.next_at = now + lease_s
        return [Queued(head.event, head.attempts) for head in heads]

    async def done(self, event: Event) -> None:
        entries = self._keys.get(event.key, [])
        for i, entry in enumerate(entries):
            if entry.event.id == event.id:
                del entries[i]
                break
        if not entries:
            self._keys.pop(event.key, None)

    async def retry(self, event: Event, at: float, attempts: int) -> None:
        for entry in self._keys.get(event.key, []):
            if entry.event.id == event.id:
                entry.next_at, entry.attempts = at, attempts

    async def next_due(self) -> float | None:
        return min((e[0].next_at for e in self._keys.values()), default=None)

    async def size(self) -> int:
        return sum(len(e) for e in self._keys.values())
