"""Graceful drain: a stopping process hands its clients to its siblings without a stampede.

The process stops accepting first (siblings on the same port keep accepting), then tells each
client to reconnect (`disconnect` with `reconnect: true` and `reconnect_delay_ms`) and closes
it, spread evenly over `[server] drain_s`, so the others take the clients at a steady rate rather
than all at once. It is done when the last client is gone, or `shutdown_grace_s` after the
spread ends.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Protocol

from server.protocol import Close

#: How often a batch of clients is closed while draining.
TICK_S = 0.02
#: Clients are asked to wait up to this long (plus their own jitter) before reconnecting.
MAX_RECONNECT_DELAY_MS = 1000


class Drainable(Protocol):
    """What draining needs of a connection (server/client.py): to close it, asking it back."""

    def disconnect(
        self, code: int, reason: str, reconnect: bool, delay_ms: int | None = None
    ) -> None: ...


class Clients(Protocol):
    """What draining needs of the node: its clients and a way to wait until none is left."""

    def drainable(self) -> list[Drainable]: ...

    async def wait_empty(self, timeout_s: float) -> bool: ...


async def drain(node: Clients, drain_s: float, grace_s: float) -> bool:
    """Close every client, spread over `drain_s`; True when all were gone in time."""
    clients = node.drainable()
    random.shuffle(clients)  # no order of arrival or user survives into the reconnect order
    ticks = max(1, math.ceil(drain_s / TICK_S))
    per_tick = max(1, math.ceil(len(clients) / ticks))
    for start in range(0, len(clients), per_tick):
        for client in clients[start : start + per_tick]:
            _ask_back(client)
        if start + per_tick < len(clients):
            await asyncio.sleep(TICK_S)
    # An upgrade admitted just before draining began may have opened since: ask it back too.
    told = {id(c) for c in clients}
    for client in node.drainable():
        if id(client) not in told:
            _ask_back(client)
    return await node.wait_empty(grace_s)


def _ask_back(client: Drainable) -> None:
    delay = random.randint(0, MAX_RECONNECT_DELAY_MS)
    client.disconnect(Close.RESTART, "server restarting", True, delay_ms=delay)
