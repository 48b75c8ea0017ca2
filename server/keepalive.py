"""Keep-alive for every connection from one timer: ping the quiet ones, drop the dead.

Tornado's own `websocket_ping_interval` runs a task per connection; at 20,000 connections one
sweep is cheaper in memory and CPU. The sweep visits a slice of the connections every second,
so each is visited once per `interval_s` and the pings are spread out instead of bursting.
A connection that sent nothing and answered no ping since its last visit is closed.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from tornado.ioloop import PeriodicCallback

from server.protocol import Close
from server.ws.frame import PING

TICK_S = 1.0


class Pingable(Protocol):
    """What keep-alive needs of a connection (server/client.py): to ping it and to drop it."""

    alive: bool

    def send(self, frame: bytes) -> None: ...

    def disconnect(self, code: int, reason: str, reconnect: bool) -> None: ...


class KeepAlive:
    def __init__(self, clients: Callable[[], Iterable[Pingable]], interval_s: float) -> None:
        self._clients = clients
        self._interval_s = interval_s
        self._round: Iterator[Pingable] = iter(())
        self._per_tick = 0
        self._round_started = -math.inf
        self._timer = PeriodicCallback(self._tick, TICK_S * 1000)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._round_started >= self._interval_s:  # a round over everyone here now
            clients = list(self._clients())
            self._round = iter(clients)
            self._per_tick = math.ceil(len(clients) * TICK_S / self._interval_s)
            self._round_started = now
        for client in itertools.islice(self._round, self._per_tick):
            self.visit(client)

    @staticmethod
    def visit(client: Pingable) -> None:
        if client.alive:
            client.alive = False
            client.send(PING)
        else:
            client.disconnect(Close.GOING_AWAY, "no answer to pings", True)
