"""Per-connection limits: a token bucket for commands and a window for malformed frames."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows `burst` commands at once and `rate` per second after that."""

    __slots__ = ("_rate", "_burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def spend(self, cost: float) -> bool:
        """Take `cost` tokens (bytes, say) if the bucket holds them, or is full.

        A full bucket lends what it lacks, so one item larger than the burst still passes
        once and the bucket stays in debt until the rate has paid it back.
        """
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < cost and self._tokens < self._burst:
            return False
        self._tokens -= cost
        return True

    def wait_s(self) -> float:
        """Seconds until the next token (0 when one is there now)."""
        now = time.monotonic()
        tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        return max(0.0, (1.0 - tokens) / self._rate)

    @property
    def full(self) -> bool:
        """Whether the bucket has refilled: forgetting it changes nothing."""
        return self._tokens + (time.monotonic() - self._at) * self._rate >= self._burst


class StrikeCounter:
    """Counts strikes (malformed frames) in a sliding minute; says when there are too many."""

    __slots__ = ("_limit", "_times")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._times: list[float] = []

    def strike(self) -> bool:
        """Record a strike; True when the last minute holds more than the limit."""
        now = time.monotonic()
        self._times = [t for t in self._times if now - t < 60.0]
        self._times.append(now)
        return len(self._times) > self._limit
