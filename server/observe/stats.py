"""Process figures: plain counters on the hot path, read out for /api/stats and /metrics.

Counters are plain ints, read out at scrape time (server/observe/metrics.py). Latencies are
tallied here by bucket and added to the Prometheus histograms at the same time: observed once per
publication, command or history write, never per delivery, and a tally costs a fifth of
prometheus_client's observe (which takes two locks), three of which were 5 % of a fast
publisher's CPU per publication.
"""

from __future__ import annotations

import os
import socket
import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

import psutil

from server.version import VERSION

HOST = socket.gethostname()

if TYPE_CHECKING:
    from server.node import Node


#: Seconds: from a millisecond up to the 10 s past which a delivery is as good as lost.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: WebSocket commands that run through a handler (`ping` is answered inline, untimed).
COMMANDS = ("auth", "subscribe", "unsubscribe", "publish", "history", "presence")


class Tally:
    """Observations counted by latency bucket, until `drain` hands them to a histogram."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        #: One count per bucket of LATENCY_BUCKETS and a last one past them (+Inf).
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # its bucket: the first ≥ it
        self.total += seconds

    def drain(self) -> tuple[list[int], float]:
        """The counts and sum since the last drain."""
        counts, total = self.counts, self.total
        self.counts, self.total = [0] * len(counts), 0.0
        return counts, total


class Stats:
    """Counters a process keeps; incremented as plain ints, never through a metrics library."""

    __slots__ = (
        "received",
        "sent",
        "published",
        "connections_total",
        "refused",
        "started",
        "_process",
        "lag",
        "store_append",
        "commands",
        "loop_lag_ms",
    )

    def __init__(self) -> None:
        self.received = 0  # commands received
        self.sent = 0  # frames sent
        self.published = 0
        self.connections_total = 0
        self.refused = 0
        self.started = time.time()
        self.loop_lag_ms = 0.0  # the worst of the last second (server/observe/looplag.py)
        self._process = psutil.Process(os.getpid())
        #: Latencies, tallied for server/observe/metrics.py's histograms.
        self.lag = Tally()  # a publication's acceptance to its frames queued here
        self.store_append = Tally()  # a history write until acknowledged
        self.commands = {op: Tally() for op in COMMANDS}  # a command's frame to its reply

    def observe_lag(self, body: bytes) -> None:
        """Observe a publication's lag from the `ts` (ms) its publisher stamped last in `body`."""
        i = body.rfind(b'"ts":', -32)
        if i < 0:
            return
        try:
            ts_ms = int(body[i + 5 : -1])
        except ValueError:
            return
        self.lag.observe(max(0.0, time.time() - ts_ms / 1000))

    def observe_command(self, op: str, seconds: float) -> None:
        tally = self.commands.get(op)
        if tally is not None:
            tally.observe(seconds)

    def snapshot(self, node: Node) -> dict[str, Any]:
        hub = node.hub
        return {
            "node": node.id,
            "pid": os.getpid(),
            "connections": hub.client_count,
            "subscriptions": hub.subscription_count,
            "channels": hub.channel_count,
            "messages_in": self.received,
            "messages_out": self.sent,
            "publications": self.published,
            "connections_total": self.connections_total,
            "connections_refused": self.refused,
            "rss_bytes": self._process.memory_info().rss,
            "cpu_s": round(sum(self._process.cpu_times()[:2]), 3),  # user + system
            "uptime_s": round(time.time() - self.started, 3),
            "loop_lag_ms": self.loop_lag_ms,
            "host": HOST,
            "version": VERSION,
        }


def totals(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the numeric figures of several processes' snapshots."""
    keys = (
        "connections",
        "subscriptions",
        "messages_in",
        "messages_out",
        "publications",
        "connections_total",
        "connections_refused",
        "rss_bytes",
    )
    total = {k: sum(int(p.get(k, 0)) for p in processes) for k in keys}
    total["processes"] = len(processes)
    return total
