"""A real HTTP webhook receiver on a loopback port, in the test's event loop.

It checks every request's signature as a backend would (server/webhooks/events.verify), refuses
the first `fail_first` attempts with 503, and records each event it accepted, in arrival order.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import tornado.httpserver
import tornado.testing
import tornado.web

from server.webhooks import events

SECRET = "test-webhook-secret-0123456789"


class _Hook(tornado.web.RequestHandler):
    def initialize(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def check_xsrf_cookie(self) -> None:
        """A webhook endpoint authenticates by signature."""

    def post(self) -> None:
        r = self.receiver
        body = self.request.body
        signed = self.request.headers.get(events.SIGNATURE_HEADER, "")
        if not events.verify(SECRET, body, signed):
            r.bad_signatures += 1
            self.set_status(401)
            return
        event = orjson.loads(body)
        assert self.request.headers[events.ID_HEADER] == event["id"]
        r.attempts.append(event["id"])
        if len(r.attempts) <= r.fail_first:
            self.set_status(503)
            return
        event["_received"] = time.monotonic()
        r.accepted.append(event)
        r.arrived.set()
        self.set_status(204)


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts: list[str] = []
        self.accepted: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.arrived = asyncio.Event()
        sock, self.port = tornado.testing.bind_unused_port()
        app = tornado.web.Application([(r"/hook", _Hook, {"receiver": self})])
        self.server = tornado.httpserver.HTTPServer(app)
        self.server.add_sockets([sock])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def of(self, key: str, value: str) -> list[str]:
        """Types of the accepted events whose data[key] is `value`, in arrival order."""
        return [e["type"] for e in self.accepted if e["data"].get(key) == value]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `count` events were accepted; returns them."""
        deadline = time.monotonic() + timeout
        while len(self.accepted) < count:
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.accepted)} of {count} events: {self.accepted}")
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass
        return self.accepted

    async def stop(self) -> None:
        self.server.stop()
        await self.server.close_all_connections()
