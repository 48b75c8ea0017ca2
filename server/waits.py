"""Waiting for an event or a timeout, whichever comes first, without losing a cancellation.

`asyncio.wait_for(event.wait(), t)` drops a cancellation on Python 3.11 when the event is set
in the same loop turn: the task goes on as if woken, so a loop stopped by `cancel()` did not
stop (a CI run hung in a webhook sender's shutdown). `asyncio.timeout` awaits in the task itself,
so the cancellation always arrives.
"""

from __future__ import annotations

import asyncio


async def woken(event: asyncio.Event, timeout_s: float) -> None:
    """Return once `event` is set or after `timeout_s`; a cancellation is never dropped."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        pass
