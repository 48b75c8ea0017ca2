"""Process figures: plain counters on the hot path, read out for /api/stats and /metrics."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from server.node import Node


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
    )

    def __init__(self) -> None:
        self.received = 0  # commands received
        self.sent = 0  # frames sent
        self.published = 0
        self.connections_total = 0
        self.refused = 0
        self.started = time.time()
        self._process = psutil.Process(os.getpid())

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


class NodeCollector(Collector):
    """Prometheus figures of one node, read at scrape time."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Any]:
        snap = self._node.process_stats()
        for key, help_ in (
            ("connections", "Open WebSocket connections"),
            ("subscriptions", "Channel subscriptions"),
            ("channels", "Channels with local subscribers"),
            ("rss_bytes", "Resident memory of this process"),
        ):
            yield GaugeMetricFamily(f"switchboard_{key}", help_, value=snap[key])
        for key, help_ in (
            ("messages_in", "Commands received"),
            ("messages_out", "Frames sent"),
            ("publications", "Publications made through this process"),
            ("connections_total", "Connections accepted"),
            ("connections_refused", "Connections refused"),
        ):
            yield CounterMetricFamily(f"switchboard_{key}", help_, value=snap[key])
