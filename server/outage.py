"""How the node meets a backing service's outage: an `unavailable` reply, a retry or a skip.

A command waiting on the broker, store or presence answers `unavailable` (the client retries);
a clean-up nobody waits for is retried until it no longer matters, or logged and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from server.protocol import Code, ProtocolError
from server.unavailable import Unavailable

log = logging.getLogger("switchboard.node")
T = TypeVar("T")


async def guard(aw: Awaitable[T]) -> T:
    """Await a broker or store call; its outage becomes an `unavailable` reply."""
    try:
        return await aw
    except Unavailable as exc:
        raise ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}") from None


async def retry(call: Callable[[], Awaitable[None]], for_s: float) -> None:
    """Call until it succeeds, with capped jittered backoff, for at most `for_s` seconds."""
    deadline, delay = time.monotonic() + for_s, 0.05
    while True:
        try:
            await call()
            return
        except Unavailable as exc:
            if time.monotonic() + delay > deadline:
                log.warning("clean-up given up after %.0f s: %s", for_s, exc)
                return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0) * random.uniform(0.5, 1.0)


async def quietly(aw: Awaitable[Any]) -> None:
    """Best-effort clean-up: an outage is logged, never raised into a closing connection."""
    try:
        await aw
    except Unavailable as exc:
        log.warning("clean-up skipped: %s", exc)
