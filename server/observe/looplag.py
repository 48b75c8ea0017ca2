"""Event-loop lag: how late the loop runs a timer, which is how long every ready callback waits.

A busy loop delays every client's replies and deliveries by this much, whatever the cause (a
slow callback, a fan-out, the GC), so the admin page shows it per process. A timer every
INTERVAL_S measures its own lateness; the worst of each WINDOW_S goes to the node's figures.
"""

from __future__ import annotations

import asyncio

from server.observe.stats import Stats

INTERVAL_S = 0.1
WINDOW_S = 1.0


class LoopLag:
    def __init__(self, stats: Stats, interval_s: float = INTERVAL_S) -> None:
        self._stats = stats
        self._interval = interval_s
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0
        self._worst = 0.0
        self._window_end = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._window_end = loop.time() + WINDOW_S
        self._schedule(loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._expected = loop.time() + self._interval
        self._handle = loop.call_at(self._expected, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self._worst = max(self._worst, now - self._expected)
        if now >= self._window_end:
            self._stats.loop_lag_ms = round(self._worst * 1000, 2)
            self._worst = 0.0
            self._window_end = now + WINDOW_S
        self._schedule(loop)
