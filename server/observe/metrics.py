"""Prometheus metrics: every process's series in one scrape, OpenMetrics when asked for.

With `--processes N` a scrape reaches whichever worker the kernel picks, so each worker writes
its series to files in a shared directory (prometheus-client's multiprocess mode, memory-mapped:
a write is a store into a page, no system call) and the worker answering `/metrics` reads all
of them. Gauges that differ per process (connections, memory, ...) carry a `node` label and
leave the scrape when their process dies; counters and histograms are summed over processes,
so they never go backwards when a worker is restarted.

Hot paths never touch this module: counters are plain ints and latencies tallies by bucket
(server/observe/stats.py), copied into the metrics once a second and on every scrape.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hmac
import ipaddress
import os
import re
import resource
import shutil
import tempfile
from typing import TYPE_CHECKING

import psutil
import tornado.ioloop
from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import CollectorRegistry

from server.observe.stats import COMMANDS, LATENCY_BUCKETS, Tally

if TYPE_CHECKING:
    from server.config import MetricsConfig
    from server.node import Node

ENV = "PROMETHEUS_MULTIPROC_DIR"
#: How stale another process's series may be in a scrape (the answering one is exact).
SYNC_INTERVAL_S = 1.0
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def share_between_processes(count: int) -> None:
    """Before forking `count` workers: make their metrics write to one shared directory.

    A directory given in PROMETHEUS_MULTIPROC_DIR is used (its old files removed: they would
    add a previous run's counts); otherwise a temporary one, removed when the parent exits.
    """
    if count <= 1:
        return
    path = os.environ.get(ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for old in glob.glob(os.path.join(path, "*.db")):
            os.remove(old)
    else:
        path = tempfile.mkdtemp(prefix="switchboard-metrics-")
        os.environ[ENV] = path
        atexit.register(shutil.rmtree, path, True)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def shared_dir() -> str | None:
    """The multiprocess directory, when this process writes its metrics there."""
    if getattr(values.ValueClass, "_multiprocess", False):
        return os.environ.get(ENV)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_processes(path: str) -> None:
    """Drop the per-process gauges of workers that are gone (a crash leaves its files)."""
    for name in glob.glob(os.path.join(path, "gauge_live*.db")):
        m = _LIVE_FILE.search(name)
        if m and not _alive(int(m.group(1))):
            mark_process_dead(int(m.group(1)), path)  # type: ignore[no-untyped-call]


class Metrics:
    """One process's metrics, refreshed from its node's figures, and the `/metrics` page."""

    def __init__(self, node: Node, sync_interval_s: float = SYNC_INTERVAL_S) -> None:
        self.node = node
        self.registry = CollectorRegistry(auto_describe=True)
        self._process = psutil.Process(os.getpid())
        self._counted: dict[str, float] = {}
        reg, nid = self.registry, node.id

        def gauge(name: str, doc: str) -> Gauge:
            g = Gauge(name, doc, ["node"], registry=reg, multiprocess_mode="livesum")
            return g.labels(nid)

        def counter(name: str, doc: str, labelled: bool = False) -> Counter:
            c = Counter(name, doc, ["node"] if labelled else [], registry=reg)
            return c.labels(nid) if labelled else c

        self._gauges = {
            "connections": gauge("switchboard_connections", "Open WebSocket connections"),
            "subscriptions": gauge("switchboard_subscriptions", "Channel subscriptions"),
            "channels": gauge("switchboard_channels", "Channels with local subscribers"),
        }
        self._counters = {
            "received": counter("switchboard_messages_in", "Commands received"),
            "sent": counter("switchboard_messages_out", "Frames sent"),
            "published": counter("switchboard_publications", "Publications made"),
            "connections_total": counter(
                "switchboard_connections_accepted", "WebSocket connections accepted"
            ),
            "refused": counter("switchboard_connections_refused", "WebSocket connections refused"),
        }
        self._rss = gauge("process_resident_memory_bytes", "Resident memory size in bytes")
        self._vms = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes")
        self._fds = gauge("process_open_fds", "Number of open file descriptors")
        self._max_fds = gauge("process_max_fds", "Maximum number of open file descriptors")
        self._start = gauge("process_start_time_seconds", "Start time since the epoch, seconds")
        self._cpu = counter("process_cpu_seconds", "User and system CPU time, seconds", True)
        stats = node.stats

        def histogram(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(name, doc, labels, registry=reg, buckets=LATENCY_BUCKETS)

        commands = histogram(
            "switchboard_command_duration_seconds",
            "WebSocket commands from their frame to their reply (all but ping)",
            ("command",),
        )
        self._tallies: list[tuple[Tally, Histogram]] = [
            (
                stats.lag,
                histogram(
                    "switchboard_delivery_lag_seconds",
                    "From a publication's acceptance to its frame queued to this process's "
                    "subscribers (once per publication and process; to the millisecond)",
                ),
            ),
            (
                stats.store_append,
                histogram(
                    "switchboard_store_append_seconds",
                    "A publication's history write until acknowledged, group commit included",
                ),
            ),
            *((stats.commands[op], commands.labels(op)) for op in COMMANDS),
        ]
        self._start.set(self._process.create_time())
        self._max_fds.set(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self._shared = shared_dir()
        self._scraped = self.registry
        if self._shared is not None:
            self._scraped = CollectorRegistry()
            MultiProcessCollector(self._scraped, self._shared)  # type: ignore[no-untyped-call]
        self._timer = tornado.ioloop.PeriodicCallback(self.sync, sync_interval_s * 1000)

    def start(self) -> None:
        """Refresh on a timer where other processes read our files; on scrape alone otherwise."""
        self.sync()
        if self._shared is not None:
            self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def sync(self) -> None:
        """Copy the node's figures into the metrics (counters by their increase)."""
        hub, stats = self.node.hub, self.node.stats
        self._gauges["connections"].set(hub.client_count)
        self._gauges["subscriptions"].set(hub.subscription_count)
        self._gauges["channels"].set(hub.channel_count)
        for attr, metric in self._counters.items():
            self._advance(attr, metric, getattr(stats, attr))
        for tally, hist in self._tallies:
            _add(hist, *tally.drain())
        with contextlib.suppress(psutil.Error):
            mem = self._process.memory_info()
            self._rss.set(mem.rss)
            self._vms.set(mem.vms)
            self._fds.set(self._process.num_fds())
            cpu = self._process.cpu_times()
            self._advance("cpu", self._cpu, cpu.user + cpu.system)

    def _advance(self, key: str, counter: Counter, total: float) -> None:
        step = total - self._counted.get(key, 0.0)
        if step > 0:
            counter.inc(step)
            self._counted[key] = total

    def expose(self, accept: str) -> tuple[bytes, str]:
        """The page for an `Accept` header: OpenMetrics when asked for, else Prometheus text."""
        self.sync()
        if self._shared is not None:
            forget_dead_processes(self._shared)
        encoder, content_type = choose_encoder(accept)
        return encoder(self._scraped), content_type


def _add(hist: Histogram, counts: list[int], total: float) -> None:
    """Add a tally's counts (one per bucket, LATENCY_BUCKETS and +Inf) and sum to `hist`:
    what observing each value would have done, by prometheus-client's own per-bucket values
    (0.26, pinned; tests/test_metrics.py compares the two)."""
    if not any(counts):
        return
    buckets = hist._buckets  # noqa: SLF001
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    hist._sum.inc(total)  # noqa: SLF001


def scrape_allowed(
    config: MetricsConfig, api_key: str, authorization: str, peer: str | None
) -> bool:
    """Whether a scrape may read /metrics.

    `Authorization: apikey <api key>`, `Authorization: Bearer <[metrics] token>` (a read-only
    credential for Prometheus), or a TCP peer inside `[metrics] open_to`. The peer is the
    socket's own address, never X-Forwarded-For, which any client can write.
    """
    scheme, _, secret = authorization.partition(" ")
    given = secret.strip().encode()
    scheme = scheme.lower()
    if scheme == "apikey" and hmac.compare_digest(given, api_key.encode()):
        return True
    if scheme == "bearer" and config.token and hmac.compare_digest(given, config.token.encode()):
        return True
    if peer and config.open_to:
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(net, strict=False) for net in config.open_to)
    return False
