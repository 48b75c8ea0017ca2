"""Token expiries, kept by the whole second: one timer per second that has any, not one per
connection. A connection's TimerHandle cost a heap entry and about 300 bytes (measured with
19,900 connections) and was made on every connect; most tokens outlive their connections, so
the timer was only ever cancelled."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol


class Expiring(Protocol):
    def expired(self) -> None: ...


class Expiries:
    """Calls `expired()` on each watched object at most a second after its time, never before."""

    __slots__ = ("_due",)

    def __init__(self) -> None:
        #: By second: who expires in it, and the timer that tells them.
        self._due: dict[int, tuple[set[Expiring], asyncio.TimerHandle]] = {}

    def watch(self, obj: Expiring, at: float) -> int:
        """Watch `obj` until wall-clock time `at`; returns the key to `forget` it by."""
        second = math.ceil(at)
        due = self._due.get(second)
        if due is None:
            delay = max(second - time.time(), 0.0)
            timer = asyncio.get_running_loop().call_later(delay, self._fire, second)
            due = self._due[second] = (set(), timer)
        due[0].add(obj)
        return second

    def forget(self, obj: Expiring, second: int) -> None:
        due = self._due.get(second)
        if due is None:
            return
        watched, timer = due
        watched.discard(obj)
        if not watched:
            del self._due[second]
            timer.cancel()

    def _fire(self, second: int) -> None:
        due = self._due.pop(second, None)
        for obj in due[0] if due is not None else ():
            obj.expired()

    def __len__(self) -> int:
        """Objects watched."""
        return sum(len(watched) for watched, _ in self._due.values())
