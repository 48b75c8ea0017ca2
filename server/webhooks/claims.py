"""Claims: which process turns a user's (or channel's) coming and going into an event.

Each process reports when a key (a user id, a channel) *appears* here (its first local
connection or subscriber) and *vanishes* here (its last one left). Claims decide, for all
processes at once, when a key appeared anywhere (`appear` returns it to exactly one caller)
and when it has been gone from everywhere for `offline_after_s` (`sweep` returns it to exactly
one caller). Each change comes with a sequence number that orders the events of its key.

Keys are kinds apart: USER and CHANNEL.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

from server.webhooks.events import SeqClock

USER = "user"
CHANNEL = "channel"
KINDS = (USER, CHANNEL)

Changes = list[tuple[str, int]]  # (key, seq)


class Claims(ABC):
    #: True when keys present here must be renewed (their claims expire otherwise).
    renews = False

    @abstractmethod
    async def appear(self, kind: str, keys: list[str]) -> Changes:
        """These keys are present here now; returns those that were present nowhere before."""

    @abstractmethod
    async def vanish(self, kind: str, keys: list[str]) -> None:
        """These keys are not present here any more."""

    @abstractmethod
    async def sweep(self, kind: str) -> Changes:
        """Keys that have been present nowhere for the debounce, each returned once."""


class MemoryClaims(Claims):
    """Claims of a single process: no other process can hold a key."""

    def __init__(self, debounce_s: float, clock: SeqClock) -> None:
        self._debounce_s = debounce_s
        self._clock = clock
        self._present: dict[str, set[str]] = {kind: set() for kind in KINDS}
        self._due: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}

    async def appear(self, kind: str, keys: list[str]) -> Changes:
        present, due, changes = self._present[kind], self._due[kind], []
        for key in keys:
            due.pop(key, None)
            if key not in present:
                present.add(key)
                changes.append((key, self._clock.next()))
        return changes

    async def vanish(self, kind: str, keys: list[str]) -> None:
        at = time.monotonic() + self._debounce_s
        for key in keys:
            self._due[kind][key] = at

    async def sweep(self, kind: str) -> Changes:
        now, due, changes = time.monotonic(), self._due[kind], []
        for key in [k for k, at in due.items() if at <= now]:
            del due[key]
            if key in self._present[kind]:
                self._present[kind].discard(key)
                changes.append((key, self._clock.next()))
        return changes
