"""What one worker process holds: its plan, its connections and counters, and the pipe to the
coordinator.

Why a base of its own: the worker's jobs share this state, and each adds its methods on top of it
in a module of its own: WorkerState <- Connections (worker_connections.py: opening, subscribing,
the delivery check, reconnecting) <- Traffic (worker_traffic.py: the load) <- Worker (worker.py:
the phases and what is reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from switchboard_load.checker import DeliveryTotals
from switchboard_load.client import Client
from switchboard_load.params import Params
from switchboard_load.stats import Histogram
from switchboard_load.tokens import UrlMaker


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker does; holders are numbered globally so channels and sources spread evenly."""

    index: int
    params: Params
    holder_start: int
    holder_count: int
    publishers: int
    pub_rate: float
    churn_rate: float
    connect_rate: float


class WorkerState:
    """The worker's plan, parameters, connections and counters, and the pipe to the coordinator."""

    def __init__(self, plan: WorkerPlan, pipe: Connection) -> None:
        self.plan = plan
        self.p = plan.params
        self.pipe = pipe
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.urls = UrlMaker(
            self.p.url, self.p.token, self.p.token_secret, self.p.duration + self.p.drain + 3600
        )
        self.holders: list[Client] = []
        #: URLs (with their tokens) made before the connect phase, so that the timed phase
        #: measures connecting, not the tester's PyJWT minting.
        self.premade: dict[str, str] = {}
        self.holder_channels: dict[Client, str] = {}
        self.slots: dict[Client, int] = {}  # where each holder is in `holders`
        self.reconnecting: set[asyncio.Future[None]] = set()
        #: drained holders reconnected, and when the last of them was live again (epoch s)
        self.reconnected = 0
        self.last_reconnect_at: float | None = None
        self.churners: set[Client] = set()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.hist = Histogram()
        self.delivered = 0
        self.pings = 0
        self.churn_opened = 0
        self.churn_frames = 0
        self.totals = DeliveryTotals()
        self.conn_seq = 0
        self.closing = False
        self.connect_hist = Histogram()
        self.max_lag = 0.0
        self.worst_lag = 0.0
        self.connect_s = 0.0

    # -- plumbing ----------------------------------------------------------------------------

    def send(self, *msg: Any) -> None:
        with _blocking(self.pipe):
            self.pipe.send(msg)

    def _on_pipe(self) -> None:
        try:
            with _blocking(self.pipe):
                msg = self.pipe.recv()
        except EOFError:
            self.inbox.put_nowait(("quit",))
            asyncio.get_running_loop().remove_reader(self.pipe.fileno())
            return
        self.inbox.put_nowait(msg)

    async def expect(self, kind: str) -> tuple[Any, ...]:
        msg = await self.inbox.get()
        if msg[0] == "quit":
            raise SystemExit(0)
        if msg[0] != kind:
            raise RuntimeError(f"worker {self.plan.index}: expected {kind}, got {msg[0]}")
        return msg

    def source(self) -> str | None:
        srcs = self.p.source_addresses
        self.conn_seq += 1
        return srcs[(self.plan.index + self.conn_seq) % len(srcs)] if srcs else None

    def channel_of(self, n: int) -> str:
        return f"{self.p.channel_prefix}{n % max(1, self.p.channels)}"


@contextlib.contextmanager
def _blocking(pipe: Connection) -> Iterator[None]:
    """The event loop's reader leaves the pipe non-blocking; a message larger than its buffer
    must still be written or read whole, so each send and receive blocks until it is."""
    fd = pipe.fileno()
    was = os.get_blocking(fd)
    os.set_blocking(fd, True)
    try:
        yield
    finally:
        os.set_blocking(fd, was)
