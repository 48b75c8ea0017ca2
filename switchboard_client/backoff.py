"""Reconnect and retry delays: exponential backoff with full jitter, and the drain delay.

Full jitter (a uniform delay in [0, window]) spreads thousands of clients that lost the same
server over the whole window instead of bringing them back in synchronised waves.
"""

from __future__ import annotations

import random

MAX_EXPONENT = 30  # 2**30 * min_delay is beyond any sensible cap already


class Backoff:
    """Delays for successive failed attempts: the window doubles from `min_s` up to `max_s`."""

    def __init__(self, min_s: float = 0.5, max_s: float = 20.0) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt, in seconds; counts this attempt."""
        window = min(self.max_s, self.min_s * 2 ** min(self.attempt, MAX_EXPONENT))
        self.attempt += 1
        return random.uniform(0.0, window)

    def reset(self) -> None:
        self.attempt = 0


def drain_delay(delay_ms: float) -> float:
    """Seconds to wait after a draining server's `reconnect_delay_ms`: N plus up to N/2 more.

    The random extra keeps the clients of a drained server from arriving together elsewhere.
    """
    return (delay_ms + random.uniform(0.0, delay_ms / 2)) / 1000.0
