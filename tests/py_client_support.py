"""Helpers for the Python client's tests: wait for a condition, record what a client saw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from server.client import Connection
from switchboard_client import Client, Publication, Recovery, State, SwitchboardError


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until `check()` holds (the client runs in this loop: nothing to block on here)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.02)


class Seen:
    """Everything a client told its application: publications per channel, states, errors."""

    def __init__(self, client: Client) -> None:
        self.pubs: dict[str, list[Any]] = {}
        self.offsets: dict[str, list[int]] = {}
        self.states: list[tuple[float, State, float | None]] = []
        self.errors: list[SwitchboardError] = []
        self.recoveries: list[Recovery] = []
        client.on("state", lambda s, retry_in: self.states.append((time.monotonic(), s, retry_in)))
        client.on("error", self.errors.append)
        client.on("recovery", self.recoveries.append)

    def publication(self, pub: Publication) -> None:
        self.pubs.setdefault(pub["channel"], []).append(pub["data"])
        self.offsets.setdefault(pub["channel"], []).append(pub["offset"])

    def data(self, channel: str) -> list[Any]:
        return self.pubs.get(channel, [])

    def count(self, state: State) -> int:
        return sum(1 for _, s, _ in self.states if s == state)


def drain(conn: Connection, delay_ms: int) -> None:
    """What the server's graceful drain does to a connection: go, come back after `delay_ms`."""
    conn.disconnect(1012, "draining", True, delay_ms=delay_ms)
