"""Publishers: over WebSocket `publish` commands or over the HTTP API, behind one small interface.

Why both: WebSocket publishers measure the full client path; `POST /api/publish` is how backends
publish in production. Both stamp the send time into `data` (`bt`, µs since the epoch) so
subscribers measure end-to-end latency, and both remember the highest acknowledged offset per
channel, which is what every subscriber must have received by the end.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from functools import partial
from typing import Any

import orjson

from switchboard_load.client import Client, error_cause

#: Publications awaiting their reply, per publisher: bounded so a slow server cannot grow memory.
MAX_IN_FLIGHT = 1000


class Publishers:
    """Round-robins publications over WebSocket clients; records acks, errors and skips."""

    def __init__(self, clients: list[Client], pad: str = "") -> None:
        self.clients = clients
        self.pad = pad
        #: every acknowledged offset, per channel: what subscribers must all have received
        self.acked: dict[str, list[int]] = {}
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.skipped = 0
        self._next = 0
        self._seq = 0

    def data(self) -> dict[str, Any]:
        self._seq += 1
        d: dict[str, Any] = {"bt": int(time.time() * 1e6), "s": self._seq}
        if self.pad:
            d["pad"] = self.pad
        return d

    def _ack(self, channel: str, offset: int) -> None:
        self.acked.setdefault(channel, []).append(offset)

    def publish(self, channel: str) -> bool:
        """Send one publication; False (counted as skipped) when every publisher is backed up."""
        for _ in range(len(self.clients)):
            client = self.clients[self._next]
            self._next = (self._next + 1) % len(self.clients)
            if client.in_flight < MAX_IN_FLIGHT and not client.closed.done():
                fut = client.send_command("publish", channel=channel, data=self.data())
                fut.add_done_callback(partial(self._done, channel))
                self.sent += 1
                return True
        self.skipped += 1
        return False

    def _done(self, channel: str, fut: asyncio.Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            self.errors[f"publish:{error_cause(exc)}"] += 1
        else:
            self._ack(channel, int(fut.result()["offset"]))

    @property
    def in_flight(self) -> int:
        return sum(c.in_flight for c in self.clients)

    async def settle(self, timeout: float) -> None:
        """Wait (bounded) until every publication sent has its reply."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


class HttpPublishers(Publishers):
    """Publishes with `POST /api/publish` and `Authorization: apikey KEY`."""

    def __init__(self, api_url: str, api_key: str | None, pad: str = "") -> None:
        super().__init__([], pad)
        from tornado.httpclient import AsyncHTTPClient

        self.http = AsyncHTTPClient(max_clients=64)
        self.endpoint = api_url.rstrip("/") + "/api/publish"
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"apikey {api_key}"
        self._in_flight = 0

    def publish(self, channel: str) -> bool:
        if self._in_flight >= MAX_IN_FLIGHT:
            self.skipped += 1
            return False
        body = orjson.dumps({"channel": channel, "data": self.data()})
        fut = asyncio.ensure_future(
            self.http.fetch(
                self.endpoint,
                method="POST",
                body=body,
                headers=self.headers,
                raise_error=False,
                request_timeout=30,
            )
        )
        self._in_flight += 1
        self.sent += 1
        fut.add_done_callback(partial(self._http_done, channel))
        return True

    def _http_done(self, channel: str, fut: asyncio.Future[Any]) -> None:
        self._in_flight -= 1
        exc = fut.exception()
        if exc is not None:
            self.errors[f"publish:{error_cause(exc)}"] += 1
            return
        resp = fut.result()
        if resp.code != 200:
            self.errors[f"publish:http:{resp.code}"] += 1
            return
        self._ack(channel, int(orjson.loads(resp.body)["offset"]))

    @property
    def in_flight(self) -> int:
        return self._in_flight
