"""The chaos scenario's traffic: subscribers that behave like the browser client, and a publisher
that records every acknowledgement.

Subscribers are switchboard_client's `Client`, which reconnects, resubscribes `since` the last
publication it delivered, retries a subscribe refused `unavailable` and honours a draining
server's delay exactly as static/switchboard.js does; each one only records what reaches it.
The publisher goes through the HTTP API, as a backend would, at a steady rate whatever happens
to the server, and records each attempt's outcome: acknowledged (offset, epoch), refused, or
never answered.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

import tornado.httpclient

from bench.chaos_check import Attempt, Delivered, Report, SubscriberLog
from switchboard_client import Client, Publication, Recovery, ServerAPI, State, SwitchboardError

now = time.monotonic


class _RecordingClient(Client):
    """The Python client as it is, telling us when the server ends one of its subscriptions."""

    def __init__(self, url: str, on_ended: Callable[[], None]) -> None:
        super().__init__(url)
        self._on_ended = on_ended

    def _on_push(self, msg: dict[str, Any]) -> None:
        if msg.get("push") == "unsubscribed":
            self._on_ended()
        super()._on_push(msg)


class Subscriber:
    def __init__(self, name: str, url: str, channels: list[str], sent: dict[int, float]) -> None:
        self.log = SubscriberLog(name, list(channels))
        self._sent = sent  # the publisher's send times, by publication id
        self.client = _RecordingClient(url, self._down)
        self.client.on("state", self._state)
        self.client.on("recovery", self._recovery)
        self._connected = False
        #: per channel: the latest send time of a publication delivered, and what was delivered
        self.last_sent: dict[str, float] = {c: -math.inf for c in channels}
        self.keys: dict[str, set[tuple[str, int]]] = {c: set() for c in channels}

    async def start(self) -> None:
        await self.client.connect()
        for channel in self.log.channels:
            await self.client.subscribe(channel, on_publication=partial(self._pub, channel))

    async def close(self) -> None:
        await self.client.close()

    @property
    def node_pid(self) -> int | None:
        """The pid of the worker this subscriber is connected to (from the hello's node id)."""
        hello = self.client.hello
        if not self._connected or hello is None:
            return None
        try:
            return int(str(hello["node"]).split("-")[-2])
        except (ValueError, IndexError):
            return None

    def live_since(self, t: float) -> bool:
        """Whether a publication sent at or after `t` reached it on every channel."""
        return all(v >= t for v in self.last_sent.values())

    def has_all(self, acked: dict[str, set[tuple[str, int]]]) -> bool:
        return all(acked.get(c, set()) <= self.keys[c] for c in self.log.channels)

    def _pub(self, channel: str, pub: Publication) -> None:
        sub = self.client.subscription(channel)
        epoch = sub.epoch if sub is not None and sub.epoch is not None else "?"
        data = pub.get("data")
        pid = int(data.get("pid", -1)) if isinstance(data, dict) else -1
        self.log.deliveries[channel].append(Delivered(channel, epoch, pub["offset"], pid, now()))
        self.keys[channel].add((epoch, pub["offset"]))
        self.last_sent[channel] = max(self.last_sent[channel], self._sent.get(pid, -math.inf))

    def _recovery(self, info: Recovery) -> None:
        channel = info["channel"]
        index = len(self.log.deliveries[channel])
        self.log.reports[channel].append(Report(channel, info["recovered"], now(), index))

    def _state(self, state: State, _retry_in: float | None) -> None:
        if state == "connected":
            self._connected = True
        elif self._connected:
            self._connected = False
            self._down()

    def _down(self) -> None:
        self.log.downs.append(now())


class Publisher:
    """Publishes `rate` per second round-robin over `channels`, recording every outcome."""

    def __init__(self, api: ServerAPI, channels: list[str], rate: float) -> None:
        self.api = api
        self.channels = channels
        self.rate = rate
        self.attempts: list[Attempt] = []
        self.sent: dict[int, float] = {}
        self.acked: dict[str, set[tuple[str, int]]] = defaultdict(set)
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_pid = 0

    @staticmethod
    def configure_http(max_clients: int = 500) -> None:
        """Let requests stuck on a dead worker not hold up the others (Tornado's default: 10)."""
        tornado.httpclient.AsyncHTTPClient.configure(None, max_clients=max_clients)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set, then wait for the replies still due."""
        t0, n = now(), 0
        while not stop.is_set():
            due = t0 + n / self.rate
            if due > now():
                try:
                    await asyncio.wait_for(stop.wait(), due - now())
                except TimeoutError:
                    pass
                continue
            task = asyncio.create_task(self._one(self.channels[n % len(self.channels)]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            n += 1
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _one(self, channel: str) -> None:
        pid = self._next_pid
        self._next_pid += 1
        sent = self.sent[pid] = now()
        try:
            ack = await self.api.publish(channel, {"pid": pid})
        except SwitchboardError as exc:
            error = exc.code if exc.status is not None else "no_reply"
            self.attempts.append(Attempt(pid, channel, sent, error=error))
            return
        self.attempts.append(Attempt(pid, channel, sent, ack["epoch"], ack["offset"]))
        self.acked[channel].add((ack["epoch"], ack["offset"]))
