"""Keeping a load-tester connection up the way the browser client does.

A draining server (SIGTERM, or a rolling restart on SIGHUP) sends `disconnect` with
`reconnect: true` and `reconnect_delay_ms` before it closes: the client waits that long plus up
to half again (its own jitter, so a drained server's clients do not arrive elsewhere together)
and reconnects, resubscribing `since` the last offset it saw so that nothing is lost. A
subscribe refused `unavailable` (Redis or MongoDB is down for a moment) is retried with capped,
full-jitter backoff instead of being given up. Without this, a rolling restart would look to
the load tester like thousands of failed connections.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard_load.client import Client, CommandError, error_cause

#: Backoff of a retried subscribe or reconnect: the window doubles from the first to the cap.
RETRY_FIRST_S = 0.1
RETRY_CAP_S = 5.0


def backoff_s(attempt: int) -> float:
    """Full jitter: uniform in [0, window], the window doubling per attempt up to the cap."""
    return random.uniform(0.0, min(RETRY_CAP_S, RETRY_FIRST_S * 2 ** min(attempt, 16)))


def reconnect_delay_s(push: dict[str, Any] | None) -> float | None:
    """Seconds to wait before reconnecting after the server's `disconnect` push: its
    `reconnect_delay_ms` plus up to 50 % more; None when it did not ask us to reconnect."""
    if push is None or push.get("reconnect") is not True:
        return None
    ms = push.get("reconnect_delay_ms")
    ms = float(ms) if isinstance(ms, int | float) and not isinstance(ms, bool) and ms > 0 else 0.0
    return (ms + random.uniform(0.0, ms / 2)) / 1000.0


async def subscribe_retrying(
    client: Client, channel: str, since: dict[str, Any] | None, timeout: float
) -> dict[str, Any]:
    """Subscribe (from `since` when given), retrying `unavailable` until `timeout` s passed."""
    deadline = time.monotonic() + timeout
    fields: dict[str, Any] = {"channel": channel}
    if since is not None:
        fields["since"] = since
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        try:
            result: dict[str, Any] = await asyncio.wait_for(
                client.send_command("subscribe", **fields), max(0.001, left)
            )
            return result
        except CommandError as exc:
            delay = backoff_s(attempt)
            if exc.code != "unavailable" or time.monotonic() + delay > deadline:
                raise
        attempt += 1
        await asyncio.sleep(delay)


def since_of(client: Client) -> dict[str, Any] | None:
    """Where a subscribed client's checker says it is: resubscribing from here misses nothing."""
    nxt = getattr(client.tag, "next", None)
    if client.epoch is None or not isinstance(nxt, int):
        return None
    return {"offset": nxt - 1, "epoch": client.epoch}


async def reconnect(
    open_again: Callable[[], Awaitable[Client]],
    delay_s: float,
    stopped: Callable[[], bool],
    errors: Counter[str],
) -> Client | None:
    """Wait `delay_s`, then open again until it works (backing off) or `stopped()` says so."""
    await asyncio.sleep(delay_s)
    attempt = 0
    while not stopped():
        try:
            return await open_again()
        except Exception as exc:
            errors[f"reconnect:{error_cause(exc)}"] += 1
        await asyncio.sleep(backoff_s(attempt))
        attempt += 1
    return None
