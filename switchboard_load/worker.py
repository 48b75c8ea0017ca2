"""One worker process: its share of the connections, on its own event loop (uvloop).

Why processes: one process can hold about 19,900 sockets (the fd limit) and one core of Python, so a
run spreads connections over workers. A worker talks to the coordinator over a pipe in phases:
connect -> `ready`; wait for `go`; load for the duration, a `tick` every second; `published` (its
highest acknowledged offsets); wait for `final` (every worker's offsets merged); drain; `result`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from switchboard_load.checker import DeliveryTotals, OffsetChecker
from switchboard_load.client import Client, connect, error_cause
from switchboard_load.fdlimit import raise_nofile
from switchboard_load.holder import reconnect, reconnect_delay_s, since_of, subscribe_retrying
from switchboard_load.params import Params
from switchboard_load.publisher import HttpPublishers, Publishers
from switchboard_load.stats import Histogram
from switchboard_load.tokens import UrlMaker

_now = time.time

#: Connects in progress at once per worker: enough to reach the connect rate, few enough for
#: SYN queues.
MAX_PENDING_CONNECTS = 256


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


def worker_main(plan: WorkerPlan, pipe: Connection) -> None:
    """Process entry point."""
    raise_nofile()
    import uvloop

    try:
        uvloop.run(Worker(plan, pipe).run())
    except KeyboardInterrupt:
        pass


class Worker:
    def __init__(self, plan: WorkerPlan, pipe: Connection) -> None:
        self.plan = plan
        self.p = plan.params
        self.pipe = pipe
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.urls = UrlMaker(
            self.p.url, self.p.token, self.p.token_secret, self.p.duration + self.p.drain + 3600
        )
        self.holders: list[Client] = []
        self.holder_channels: dict[Client, str] = {}
        self.slots: dict[Client, int] = {}  # where each holder is in `holders`
        self.reconnecting: set[asyncio.Future[None]] = set()
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

    # -- plumbing ----------------------------------------------------------------------------

    def send(self, *msg: Any) -> None:
        self.pipe.send(msg)

    def _on_pipe(self) -> None:
        try:
            self.inbox.put_nowait(self.pipe.recv())
        except EOFError:
            self.inbox.put_nowait(("quit",))
            asyncio.get_running_loop().remove_reader(self.pipe.fileno())

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

    # -- deliveries --------------------------------------------------------------------------

    def on_pub(self, client: Client, msg: dict[str, Any]) -> None:
        """Hot path: count, take latency from the publisher's stamp, feed the offset checker.

        The in-order case of OffsetChecker.see is inlined: it is nearly every delivery, and a
        method call is a measurable share of the tester's CPU per frame (bench/README.md).
        """
        self.delivered += 1
        data = msg.get("data")
        if data.__class__ is dict and "bt" in data:
            self.latencies.append(_now() * 1e6 - data["bt"])
        tag = client.tag
        offset = msg["offset"]
        if tag.__class__ is OffsetChecker:
            if offset == tag.next:
                tag.next = offset + 1
                tag.received += 1
            else:
                tag.see(offset)
        elif tag.__class__ is list:
            tag.append(offset)  # arrived before the subscribe reply

    async def open_client(
        self,
        name: str,
        channel: str | None,
        since: dict[str, Any] | None = None,
        checker: OffsetChecker | None = None,
    ) -> Client:
        """Connect, and subscribe when `channel` is given; the client's tag is its checker.

        After a drain, `since` and `checker` resume the subscription where it stopped.
        """
        t0 = time.perf_counter()
        client = await connect(
            self.urls(name), self.on_pub, self.source(), self.p.connect_timeout, self.p.encoding
        )
        client.name = name
        self.connect_hist.add_many([(time.perf_counter() - t0) * 1e6])
        if channel is not None:
            client.tag = []
            try:
                res = await subscribe_retrying(client, channel, since, self.p.connect_timeout)
            except BaseException:
                client.close()
                raise
            early = client.tag
            chk = checker
            if chk is None or since is None or res["epoch"] != since["epoch"]:
                if chk is not None:  # a new epoch: offsets start again, so does the check
                    self.totals.add(channel, chk, None)
                chk = OffsetChecker(int(res["offset"]))
            for pub in res.get("missed") or ():
                chk.see(int(pub["offset"]))
            for off in early:
                chk.see(off)
            client.epoch = str(res["epoch"])
            client.tag = chk
        return client

    def watch(self, client: Client, kind: str) -> None:
        """Count a connection the server closes on us, by close code; a holder the server
        drains (`disconnect` with `reconnect: true`) reconnects as the browser client would."""

        def closed(fut: asyncio.Future[int | None]) -> None:
            if self.closing or (kind == "churn" and client not in self.churners):
                return  # we closed it ourselves
            delay = reconnect_delay_s(client.disconnect_push) if kind == "hold" else None
            if delay is None:
                self.errors[f"{kind}-closed:{fut.result()}"] += 1
                return
            self.errors[f"hold-drained:{fut.result()}"] += 1
            task = asyncio.ensure_future(self.replace(client, delay))
            self.reconnecting.add(task)
            task.add_done_callback(self.reconnecting.discard)

        client.closed.add_done_callback(closed)

    async def replace(self, old: Client, delay: float) -> None:
        """Reconnect a drained holder in its place, resubscribing from where its check is."""
        channel = self.holder_channels.get(old) or None
        chk = old.tag if isinstance(old.tag, OffsetChecker) else None
        again = partial(self.open_client, old.name, channel, since_of(old), chk)
        new = await reconnect(again, delay, lambda: self.closing, self.errors)
        if new is None:
            return
        if self.closing:
            new.close()
            return
        new.frames += old.frames
        slot = self.slots.pop(old)
        self.holders[slot] = new
        self.slots[new] = slot
        self.holder_channels[new] = self.holder_channels.pop(old)
        self.watch(new, "hold")

    # -- phases ------------------------------------------------------------------------------

    async def connect_all(self) -> None:
        """Open this worker's holders at its connect rate, reporting progress each second."""
        plan, sem = self.plan, asyncio.Semaphore(MAX_PENDING_CONNECTS)
        subscribe = self.p.scenario in ("fanout", "churn") or self.p.subscribe
        t0 = time.monotonic()
        last_tick = t0

        async def one(n: int) -> None:
            try:
                ch = self.channel_of(n) if subscribe else None
                client = await self.open_client(f"bench-{n}", ch)
                self.slots[client] = len(self.holders)
                self.holders.append(client)
                self.holder_channels[client] = ch or ""
                self.watch(client, "hold")
            except Exception as exc:
                self.errors[f"connect:{error_cause(exc)}"] += 1
            finally:
                sem.release()

        tasks = []
        for i in range(plan.holder_count):
            due = t0 + i / plan.connect_rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            await sem.acquire()
            tasks.append(asyncio.create_task(one(plan.holder_start + i)))
            if now - last_tick >= 1.0:
                last_tick = now
                self.send("connecting", plan.index, len(self.holders), sum(self.errors.values()))
        await asyncio.gather(*tasks)
        self.connect_s = time.monotonic() - t0

    async def connect_publishers(self) -> Publishers | None:
        plan = self.plan
        if self.p.scenario not in ("fanout", "churn") or plan.pub_rate <= 0:
            return None
        pad = "x" * self.p.payload_bytes
        if self.p.api_url:
            return HttpPublishers(self.p.api_url, self.p.api_key, pad)
        clients = []
        for i in range(plan.publishers):
            try:
                clients.append(await self.open_client(f"bench-pub-{plan.index}-{i}", None))
            except Exception as exc:
                self.errors[f"publisher-connect:{error_cause(exc)}"] += 1
        return Publishers(clients, pad) if clients else None

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
        self.send("published", self.plan.index, dict(pubs.acked) if pubs else {})
        (_, finals) = await self.expect("final")
        await self.drain(finals)
        self.closing = True
        ticker.cancel()
        lag.cancel()
        self.flush_latencies()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        for c in self.holders:
            if isinstance(c.tag, OffsetChecker):
                ch = self.holder_channels[c]
                self.totals.add(ch, c.tag, finals.get(ch, 0))
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
            },
        )
        for c in self.holders:
            c.close()
        for c in list(self.churners):
            c.close()
        await asyncio.sleep(0.2)
        loop.remove_reader(self.pipe.fileno())

    async def drain(self, finals: dict[str, int]) -> None:
        """Wait (at most --drain s) until every holder has every acknowledged publication."""
        deadline = time.monotonic() + self.p.drain
        pending = [c for c in self.holders if isinstance(c.tag, OffsetChecker)]
        while pending and time.monotonic() < deadline:
            pending = [
                c
                for c in pending
                if not c.closed.done()
                and not c.tag.caught_up(finals.get(self.holder_channels[c], 0))
            ]
            if pending:
                await asyncio.sleep(0.05)

    # -- load generators ---------------------------------------------------------------------

    async def pace(self, pubs: Publishers, stop_at: float) -> None:
        """Publish at this worker's rate, round-robin over channels, in 5 ms steps."""
        rate, k = self.plan.pub_rate, max(1, self.p.channels)
        t0, sent, n = time.monotonic(), 0, self.plan.index
        while (now := time.monotonic()) < stop_at:
            due = int((now - t0) * rate) - sent
            for _ in range(due):
                pubs.publish(f"{self.p.channel_prefix}{n % k}")
                n += 1
            sent += max(0, due)
            await asyncio.sleep(0.005)

    async def echo(self, client: Client, stop_at: float) -> None:
        """`ping` round trips, closed-loop or at --ping-rate per client; latency is the round trip.

        A paced client stays under a server's per-connection command rate limit (Switchboard's
        default is 100/s), which a closed loop on loopback would pass and be closed with 4008.
        """
        interval = 1.0 / self.p.ping_rate if self.p.ping_rate > 0 else 0.0
        next_at = time.monotonic()
        while time.monotonic() < stop_at and not client.closed.done():
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - interval - time.monotonic()))
            t0 = time.perf_counter()
            try:
                await client.send_command("ping")
            except Exception as exc:
                self.errors[f"ping:{error_cause(exc)}"] += 1
                return
            self.latencies.append((time.perf_counter() - t0) * 1e6)
            self.pings += 1
            self.delivered += 1

    async def churn(self, stop_at: float) -> None:
        """Open connections at the churn rate; each subscribes, lives churn_life s, then closes."""
        t0, n, tasks = time.monotonic(), 0, set()
        while (now := time.monotonic()) < stop_at:
            due = t0 + n / self.plan.churn_rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            task = asyncio.create_task(self.churn_one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)

    async def churn_one(self, n: int) -> None:
        name = f"bench-churn-{self.plan.index}-{n}"
        ch = self.channel_of(n)
        self.churn_opened += 1
        try:
            client = await self.open_client(name, ch)
        except Exception as exc:
            self.errors[f"churn-connect:{error_cause(exc)}"] += 1
            return
        self.churners.add(client)
        self.watch(client, "churn")
        await asyncio.sleep(self.p.churn_life)
        self.churners.discard(client)
        client.close()
        self.churn_frames += client.frames
        if isinstance(client.tag, OffsetChecker):
            self.totals.add(ch, client.tag, None)

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
