"""The parent process: splits the work, starts workers, steps them through the phases, collects.

Why phases: the delivery check needs every subscriber in place before the first publication and
every publisher's last acknowledged offset before the final count, so workers move together:
all `ready` -> `go` -> all `published` -> `final` (offsets merged) -> all `result`. Only the
acknowledged offsets are owed to subscribers: a refused publication's offset may be void.
Every wait is bounded, so a hung worker or server ends the run with a message, never a hang.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from switchboard_load.checker import Runs
from switchboard_load.params import Params
from switchboard_load.progress import Progress
from switchboard_load.serverstats import stats_url, try_cpu, try_memory
from switchboard_load.stats import Histogram
from switchboard_load.worker import WorkerPlan, worker_main

#: A worker whose CPU use over a second exceeds this share of a core is saturated.
SATURATED_CPU = 0.9
#: Loop lag (ms) that, without high CPU, means the worker waited for a core: a busy machine.
STARVED_LAG_MS = 200.0


class RunFailed(RuntimeError):
    """The run could not complete (a worker died or a phase timed out)."""


@dataclass
class Collected:
    """What the coordinator gathers for the report."""

    ready: dict[int, dict[str, Any]] = field(default_factory=dict)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: per second since `go`: summed deliveries, published, merged histogram, max worker CPU
    seconds: dict[int, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    finals: dict[str, int] = field(default_factory=dict)
    server_before: tuple[int | None, int | None] = (None, None)
    server_after: tuple[int | None, int | None] = (None, None)
    server_stats_error: str | None = None
    #: the server's CPU seconds (all its processes) from `go` to the end of the drain
    server_cpu_s: float | None = None
    #: server CPU seconds spent while the clients connected (hold): the cost of connection setup
    server_connect_cpu_s: float | None = None
    warnings: list[str] = field(default_factory=list)
    t_go: float = 0.0
    load_s: float = 0.0


def make_plans(p: Params) -> list[WorkerPlan]:
    """Split holders, publishers and rates evenly over the workers."""
    w = max(1, p.workers)

    def share(total: int, i: int) -> tuple[int, int]:
        base, extra = divmod(total, w)
        return i * base + min(i, extra), base + (1 if i < extra else 0)

    plans = []
    publishers = p.publishers if p.scenario in ("fanout", "churn") else 0
    for i in range(w):
        start, count = share(p.holders, i)
        _, pubs = share(publishers, i)
        pub_rate = p.rate * (pubs / publishers) if publishers and not p.api_url else 0.0
        if p.api_url and p.scenario in ("fanout", "churn"):
            pub_rate = p.rate / w
        plans.append(
            WorkerPlan(
                index=i,
                params=p,
                holder_start=start,
                holder_count=count,
                publishers=pubs,
                pub_rate=pub_rate,
                churn_rate=p.churn_rate / w,
                connect_rate=p.connect_rate / w,
            )
        )
    return plans


class Coordinator:
    def __init__(self, p: Params, progress: Progress) -> None:
        self.p = p
        self.progress = progress
        self.c = Collected()
        self.pipes: dict[int, Connection] = {}
        self.procs: dict[int, mp.process.BaseProcess] = {}
        self.connecting: dict[int, tuple[int, int]] = {}
        self.latest: dict[int, dict[str, Any]] = {}
        self.stats_url = stats_url(p.url, p.api_url)
        self._connect_cpu0: float | None = None

    def run(self) -> Collected:
        p = self.p
        if p.scenario == "hold":
            self.c.server_before, self.c.server_stats_error = try_memory(self.stats_url, p.api_key)
            self._connect_cpu0 = try_cpu(self.stats_url, p.api_key) if p.api_key else None
        ctx = mp.get_context("spawn")
        try:
            for plan in make_plans(p):
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=worker_main,
                    args=(plan, child),
                    daemon=True,
                    name=f"bench-worker-{plan.index}",
                )
                proc.start()
                child.close()
                self.pipes[plan.index], self.procs[plan.index] = parent, proc
            self.phases()
        finally:
            self.stop_workers()
        return self.c

    def phases(self) -> None:
        p, c = self.p, self.c
        connect_budget = p.holders / p.connect_rate + p.connect_timeout + 60
        self.progress.say(f"connecting {p.holders} clients over {len(self.pipes)} worker(s)...")
        self.gather("ready", connect_budget, c.ready)
        connected = sum(r["connected"] for r in c.ready.values())
        self.progress.say(f"connected {connected}/{p.holders}")
        if p.scenario == "hold":
            time.sleep(0.5)  # let the server account the last connections
            c.server_after, err = try_memory(self.stats_url, p.api_key)
            c.server_stats_error = c.server_stats_error or err
            cpu = try_cpu(self.stats_url, p.api_key) if self._connect_cpu0 is not None else None
            if cpu is not None and self._connect_cpu0 is not None:
                c.server_connect_cpu_s = cpu - self._connect_cpu0
        cpu0 = try_cpu(self.stats_url, p.api_key) if p.api_key else None
        c.t_go = time.time() + 0.2
        self.broadcast("go", c.t_go)
        published: dict[int, dict[str, Runs]] = {}
        self.gather("published", p.duration + p.drain + 60, published)
        c.load_s = time.time() - c.t_go
        acked: dict[str, Runs] = {}
        for sent in published.values():
            for ch, runs in sent.items():  # sorted: the last run ends at the highest offset
                c.finals[ch] = max(c.finals.get(ch, 0), runs[-1][1])
                acked.setdefault(ch, []).extend(runs)
        self.broadcast("final", c.finals, acked)
        self.gather("result", p.drain + 60, c.results)
        cpu1 = try_cpu(self.stats_url, p.api_key) if cpu0 is not None else None
        if cpu0 is not None and cpu1 is not None:
            c.server_cpu_s = cpu1 - cpu0
        self.progress.say(f"finished: {sum(r['delivered'] for r in c.results.values())} delivered")

    def gather(self, kind: str, timeout: float, into: dict[int, Any]) -> None:
        """Handle worker messages until every worker sent `kind`; ticks feed the live display."""
        deadline = time.monotonic() + timeout
        listening = dict(self.pipes)
        while len(into) < len(self.pipes):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(self.pipes) - set(into))
                raise RunFailed(f"workers {missing} did not report {kind!r} within {timeout:.0f} s")
            for ready in wait(list(listening.values()), timeout=min(left, 1.0)):
                conn = cast(Connection, ready)
                try:
                    msg = conn.recv()
                except EOFError:
                    idx = next(i for i, pc in self.pipes.items() if pc is conn)
                    if idx in into:  # it reported and is done: others may still be draining
                        del listening[idx]
                        continue
                    self.procs[idx].join(2)
                    raise RunFailed(
                        f"worker {idx} exited (code {self.procs[idx].exitcode})"
                    ) from None
                self.handle(msg, kind, into)

    def handle(self, msg: tuple[Any, ...], kind: str, into: dict[int, Any]) -> None:
        what, idx = msg[0], msg[1]
        if what == kind:
            into[idx] = msg[2]
        elif what == "connecting":
            self.connecting[idx] = (msg[2], msg[3])
            ok = sum(v[0] for v in self.connecting.values())
            bad = sum(v[1] for v in self.connecting.values())
            self.progress.update(f"connecting: {ok} open, {bad} failed")
        elif what == "tick":
            self.tick(idx, msg[2])

    def tick(self, idx: int, t: dict[str, Any]) -> None:
        sec = int(t["t"] - self.c.t_go)
        s = self.c.seconds[sec]
        s["delivered"] = s.get("delivered", 0) + t["delivered"]
        s["published"] = s.get("published", 0) + t["published"]
        hist = Histogram.from_sparse(t["hist"])
        s.setdefault("hist", Histogram()).merge(hist)
        s["cpu_max"] = max(s.get("cpu_max", 0.0), t["cpu"])
        s["conns"] = s.get("conns", 0) + t["conns"]
        if t["cpu"] > SATURATED_CPU:
            self.warn(
                f"worker {idx} saturated at {sec}s (CPU {t['cpu']:.0%} of a core, loop lag "
                f"{t['lag_ms']:.0f} ms): figures may measure the tester; add --workers"
            )
        elif t["lag_ms"] > STARVED_LAG_MS:
            self.warn(
                f"worker {idx} starved at {sec}s (loop lag {t['lag_ms']:.0f} ms at CPU "
                f"{t['cpu']:.0%}): the machine's cores are busy; latencies include waiting"
            )
        self.latest[idx] = t
        now = self.latest.values()
        self.progress.update(
            f"[{sec:>4}s] conns {sum(x['conns'] for x in now):>6}  "
            f"delivered/s {sum(x['delivered'] for x in now):>8}  "
            f"pub/s {sum(x['published'] for x in now):>6}  "
            f"p99 {hist.percentile_us(99) / 1000:7.1f} ms (worker {idx})  "
            f"errors {sum(x['errors'] for x in now)}"
        )

    def warn(self, text: str) -> None:
        if len(self.c.warnings) < 20:
            self.c.warnings.append(text)
        self.progress.say("warning: " + text, always=True)

    def broadcast(self, *msg: Any) -> None:
        for conn in self.pipes.values():
            conn.send(msg)

    def stop_workers(self) -> None:
        """Ask, then insist: every worker ends within a few seconds, whatever state it is in."""
        for conn in self.pipes.values():
            try:
                conn.send(("quit",))
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for proc in self.procs.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join()
