"""Keep-alive for every connection from one timer: ping the quiet ones, drop the dead.

Tornado's own `websocket_ping_interval` runs a task per connection; at 20,000 connections one
sweep is cheaper in memory and CPU. The sweep visits a slice of the connections every second,
so each is visited once per `interval_s` and the pings are spread out instead of bursting.
A connection that sent nothing and answered no ping since its last visit is closed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

from tornado.ioloop import PeriodicCallback

from server.hub import Hub
from server.protocol import Close

PING_FRAME = b"\x89\x00"  # an empty WebSocket ping
TICK_S = 1.0


class Pingable(Protocol):
    alive: bool

    def send(self, frame: bytes) -> None: ...

    def disconnect(self, code: int, reason: str, reconnect: bool) -> None: ...


class KeepAlive:
    def __init__(self, hub: Hub, interval_s: float) -> None:
        self._hub = hub
        self._interval_s = interval_s
        self._pending: Iterator[Pingable] = iter(())
        self._left = 0
        self._timer = PeriodicCallback(self._tick, TICK_S * 1000)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        if self._left <= 0:  # a new round over everyone connected now
            clients = list(self._hub.clients())
            self._pending = iter(clients)  # type: ignore[arg-type]
            self._left = len(clients)
        rounds = max(1.0, self._interval_s / TICK_S)
        for _ in range(min(self._left, math.ceil(self._hub.client_count / rounds) or 1)):
            self._left -= 1
            client = next(self._pending, None)
            if client is None:
                self._left = 0
                return
            self.visit(client)

    @staticmethod
    def visit(client: Pingable) -> None:
        if client.alive:
            client.alive = False
            client.send(PING_FRAME)
        else:
            client.disconnect(Close.GOING_AWAY, "no answer to pings", True)
