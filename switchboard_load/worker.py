"""One worker process: its share of the connections, on its own event loop (uvloop).

Why processes: one process can hold about 19,900 sockets (the fd limit) and one core of Python, so a
run spreads connections over workers. A worker talks to the coordinator over a pipe in phases:
connect -> `ready`; wait for `go`; load for the duration, a `tick` every second; `published` (its
highest acknowledged offsets); wait for `final` (every worker's offsets merged); drain; `result`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from multiprocessing.connection import Connection

from switchboard_load.checker import OffsetChecker, offsets_in, runs_of
from switchboard_load.fdlimit import raise_nofile
from switchboard_load.publisher import HttpPublishers, Publishers
from switchboard_load.stats import Histogram
from switchboard_load.worker_state import WorkerPlan
from switchboard_load.worker_traffic import Traffic

__all__ = ["Worker", "WorkerPlan", "worker_main"]


def worker_main(plan: WorkerPlan, pipe: Connection) -> None:
    """Process entry point."""
    raise_nofile()
    import uvloop

    try:
        uvloop.run(Worker(plan, pipe).run())
    except KeyboardInterrupt:
        pass


class Worker(Traffic):
    """A worker's phases, from connecting to its result, and its per-second ticks."""

    # -- phases ------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self._on_pipe)
        await self.connect_all()
        pubs = await self.connect_publishers()
        self.send(
            "ready",
            self.plan.index,
            {
                "connected": len(self.holders),
                "errors": dict(self.errors),
                "connect_s": self.connect_s,
                "connect_ms": self.connect_hist.summary_ms(),
                "publishers": len(pubs.clients)
                if pubs and not isinstance(pubs, HttpPublishers)
                else (1 if pubs else 0),
            },
        )
        (_, t_go) = await self.expect("go")
        await asyncio.sleep(max(0.0, t_go - time.time()))
        cpu0, wall0 = time.process_time(), time.monotonic()
        stop_at = wall0 + self.p.duration
        ticker = asyncio.create_task(self.ticker(pubs))
        lag = asyncio.create_task(self.lag_probe())
        load = [asyncio.create_task(self.pace(pubs, stop_at))] if pubs else []
        if self.p.scenario == "echo":
            load += [asyncio.create_task(self.echo(c, stop_at)) for c in self.holders]
        if self.plan.churn_rate > 0:
            load.append(asyncio.create_task(self.churn(stop_at)))
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        await asyncio.gather(*load)
        if pubs:
            await pubs.settle(self.p.drain)
        sent = {ch: runs_of(offsets) for ch, offsets in pubs.acked.items()} if pubs else {}
        self.send("published", self.plan.index, sent)
        (_, finals, acked_runs) = await self.expect("final")
        acked = {ch: offsets_in(runs) for ch, runs in acked_runs.items()}
        await self.drain(finals, acked)
        self.closing = True
        ticker.cancel()
        lag.cancel()
        self.flush_latencies()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        for c in self.holders:
            if isinstance(c.tag, OffsetChecker):
                ch = self.holder_channels[c]
                self.totals.add(ch, c.tag, finals.get(ch, 0), acked.get(ch))
            for reason in c.unsubscribed:
                self.errors[f"unsubscribed:{reason}"] += 1
        if pubs:
            self.errors.update(pubs.errors)
            if pubs.skipped:
                self.errors["publish:backpressure_skipped"] += pubs.skipped
        frames = (
            sum(c.frames for c in self.holders)
            + self.churn_frames
            + sum(c.frames for c in (pubs.clients if pubs else []))
        )
        # What the subscribers received: their frames and the bytes those carried.
        held_frames = sum(c.frames for c in self.holders)
        held_bytes = sum(c.payload_bytes for c in self.holders)
        self.send(
            "result",
            self.plan.index,
            {
                "delivered": self.delivered,
                "pings": self.pings,
                "frames": frames,
                "held_frames": held_frames,
                "held_payload_bytes": held_bytes,
                "hist": self.hist.to_sparse(),
                "cpu_s": cpu,
                "wall_s": wall,
                "errors": dict(self.errors),
                "published": pubs.sent if pubs else 0,
                "delivery": asdict(self.totals),
                "churn_opened": self.churn_opened,
                "max_lag_ms": self.worst_lag * 1000,
                "still_open": sum(1 for c in self.holders if not c.closed.done()),
                "reconnected": self.reconnected,
                "last_reconnect_at": self.last_reconnect_at,
                "still_reconnecting": len(self.reconnecting),
            },
        )
        for c in self.holders:
            c.close()
        for c in list(self.churners):
            c.close()
        await asyncio.sleep(0.2)
        loop.remove_reader(self.pipe.fileno())

    async def drain(self, finals: dict[str, int], acked: dict[str, frozenset[int]]) -> None:
        """Wait (at most --drain s) until every holder has every acknowledged publication."""
        deadline = time.monotonic() + self.p.drain
        pending = [c for c in self.holders if isinstance(c.tag, OffsetChecker)]
        while pending and time.monotonic() < deadline:
            pending = [
                c
                for c in pending
                if not c.closed.done()
                and not c.tag.caught_up(finals.get(ch := self.holder_channels[c], 0), acked.get(ch))
            ]
            if pending:
                await asyncio.sleep(0.05)

    # -- reporting ---------------------------------------------------------------------------

    def flush_latencies(self) -> Histogram:
        h = Histogram()
        h.add_many(self.latencies)
        self.latencies = []
        self.hist.merge(h)
        return h

    async def lag_probe(self) -> None:
        """Loop lag: how late a 50 ms timer fires; a saturated worker shows it first."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            self.max_lag = max(self.max_lag, time.monotonic() - t - 0.05)
            self.worst_lag = max(self.worst_lag, self.max_lag)

    async def ticker(self, pubs: Publishers | None) -> None:
        """Each second: deliveries, latency histogram, CPU and lag of the last interval."""
        last_cpu, last_wall = time.process_time(), time.monotonic()
        last_delivered = last_pub = 0
        while True:
            await asyncio.sleep(1.0)
            cpu, wall = time.process_time(), time.monotonic()
            h = self.flush_latencies()
            sent = pubs.sent if pubs else 0
            self.send(
                "tick",
                self.plan.index,
                {
                    "t": time.time(),
                    "delivered": self.delivered - last_delivered,
                    "published": sent - last_pub,
                    "hist": h.to_sparse(),
                    "cpu": (cpu - last_cpu) / (wall - last_wall),
                    "lag_ms": self.max_lag * 1000,
                    "conns": sum(1 for c in self.holders if not c.closed.done())
                    + len(self.churners),
                    "errors": sum(self.errors.values())
                    + (sum(pubs.errors.values()) if pubs else 0),
                },
            )
            self.max_lag = 0.0
            last_cpu, last_wall, last_delivered, last_pub = cpu, wall, self.delivered, sent
