"""The result document: one JSON object with the same keys for every scenario.

Why one shape: the suite, CI and people compare runs; `scenario`, `delivered`, `deliveries_per_s`,
`latency_ms`, `lost`/`duplicated`/`reordered` and `errors` are always there, plus the run's
parameters, the tester's own CPU cost, and per-second series for the plot.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from typing import Any

from switchboard_load.checker import DeliveryTotals
from switchboard_load.coordinator import Collected
from switchboard_load.params import Params
from switchboard_load.stats import Histogram


def build(p: Params, c: Collected) -> dict[str, Any]:
    hist = Histogram()
    errors: Counter[str] = Counter()
    totals = DeliveryTotals()
    # A worker's `result` errors include its `ready` ones: take each worker's latest count.
    for index, ready in c.ready.items():
        errors.update(c.results[index]["errors"] if index in c.results else ready["errors"])
    for r in c.results.values():
        hist.merge(Histogram.from_sparse(r["hist"]))
        d = r["delivery"]
        totals.merge(
            DeliveryTotals(
                d["lost"],
                d["duplicated"],
                d["reordered"],
                d["subscriptions"],
                [tuple(e) for e in d["examples"]],
            )
        )
    delivered = sum(r["delivered"] for r in c.results.values())
    cpu = sum(r["cpu_s"] for r in c.results.values())
    wall = max((r["wall_s"] for r in c.results.values()), default=0.0) or 1e-9
    frames = sum(r["frames"] for r in c.results.values())
    load_s = p.duration
    rate = delivered / load_s
    connected = sum(r["connected"] for r in c.ready.values())
    connect_s = max((r["connect_s"] for r in c.ready.values()), default=0.0)
    doc: dict[str, Any] = {
        "scenario": p.scenario,
        "delivered": delivered,
        "deliveries_per_s": round(rate, 1),
        "latency_ms": hist.summary_ms(),
        "lost": totals.lost,
        "duplicated": totals.duplicated,
        "reordered": totals.reordered,
        "lost_examples": [list(e) for e in totals.examples],
        "subscriptions_checked": totals.subscriptions,
        "errors": dict(sorted(errors.items())),
        "published": sum(r["published"] for r in c.results.values()),
        "channel_offsets": c.finals if len(c.finals) <= 100 else {"channels": len(c.finals)},
        "connections": {
            "requested": p.holders,
            "opened": connected,
            "still_open": sum(r["still_open"] for r in c.results.values()),
            "connect_s": round(connect_s, 3),
            "connect_rate_per_s": round(connected / connect_s, 1) if connect_s else None,
            "churn_opened": sum(r["churn_opened"] for r in c.results.values()),
            # holders the server drained (disconnect push) and that came back with `since`
            "reconnected": sum(r["reconnected"] for r in c.results.values()),
            "still_reconnecting": sum(r["still_reconnecting"] for r in c.results.values()),
            "last_reconnect_at": max(
                (r["last_reconnect_at"] for r in c.results.values() if r["last_reconnect_at"]),
                default=None,
            ),
        },
        "client": {
            "workers": len(c.results),
            "cpu_s": round(cpu, 3),
            "frames": frames,
            "cpu_us_per_frame": round(cpu / frames * 1e6, 2) if frames else None,
            "encoding": p.encoding,
            "payload_bytes_per_delivery": _per(c.results, "held_payload_bytes", "held_frames"),
            "cores": round(cpu / wall, 3),
            "cores_per_100k_deliveries_s": round((cpu / wall) / (rate / 1e5), 3) if rate else None,
            "max_loop_lag_ms": round(
                max((r["max_lag_ms"] for r in c.results.values()), default=0.0), 1
            ),
            "warnings": c.warnings,
        },
        "params": p.document(),
        "machine": {"host": platform.node(), "cpus": _cpus(), "python": platform.python_version()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(c.t_go)),
        "series": series(c),
    }
    if p.scenario == "echo":
        doc["round_trips_per_s"] = doc["deliveries_per_s"]
    if p.scenario == "hold":
        doc["server"] = server_memory(c, connected)
    elif c.server_cpu_s is not None:
        per = c.server_cpu_s / delivered * 1e6 if delivered else None
        doc["server"] = {
            "cpu_s": round(c.server_cpu_s, 3),
            "cpu_us_per_delivery": round(per, 2) if per is not None else None,
        }
    return doc


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def server_memory(c: Collected, connected: int) -> dict[str, Any]:
    (rss0, conns0), (rss1, conns1) = c.server_before, c.server_after
    out: dict[str, Any] = {
        "rss_before": rss0,
        "rss_after": rss1,
        "connections_reported": conns1,
        "stats_error": c.server_stats_error,
    }
    if c.server_connect_cpu_s is not None and connected:
        out["connect_cpu_s"] = round(c.server_connect_cpu_s, 3)
        out["cpu_us_per_connection"] = round(c.server_connect_cpu_s / connected * 1e6, 1)
    if rss0 is not None and rss1 is not None:
        added = (conns1 - conns0) if conns0 is not None and conns1 is not None else connected
        out["bytes_per_connection"] = round((rss1 - rss0) / added) if added > 0 else None
    return out


def series(c: Collected) -> list[dict[str, Any]]:
    """Per second since `go`: deliveries, publications, latency percentiles, worst worker CPU."""
    out = []
    for sec in sorted(c.seconds):
        s = c.seconds[sec]
        h: Histogram = s["hist"]
        out.append(
            {
                "t": sec,
                "delivered": s["delivered"],
                "published": s["published"],
                "conns": s["conns"],
                "cpu_max": round(s["cpu_max"], 3),
                **({"latency_ms": h.summary_ms()} if h.total else {}),
            }
        )
    return out


#: Error keys that are the tester's own back-off, not the server's refusal.
NOT_REFUSALS = ("publish:backpressure_skipped",)


def failures(doc: dict[str, Any]) -> list[str]:
    """Why the run must fail loudly: any delivery-guarantee breach, a refused publication, or
    nothing to check (a run where every publication was refused would otherwise lose nothing
    and look clean)."""
    msgs = []
    refused = {
        k: v
        for k, v in doc["errors"].items()
        if k.startswith("publish:") and k not in NOT_REFUSALS and v
    }
    if refused:
        causes = ", ".join(
            f"{k.partition(':')[2]} x{v}" for k, v in sorted(refused.items(), key=lambda kv: -kv[1])
        )
        msgs.append(
            f"PUBLICATIONS REFUSED: {sum(refused.values())} of {doc['published']} sent "
            f"failed ({causes})"
        )
    if doc["scenario"] in ("fanout", "churn", "echo") and doc["delivered"] == 0:
        what = "round trip completed" if doc["scenario"] == "echo" else "publication delivered"
        msgs.append(f"NOTHING DELIVERED: not a single {what}")
    if doc["scenario"] in ("fanout", "churn") and doc["published"] and not doc["channel_offsets"]:
        msgs.append("NO PUBLICATION ACKNOWLEDGED: the server never confirmed one")
    if doc["lost"] or doc["duplicated"] or doc["reordered"]:
        ex = ", ".join(f"{ch}@{off}" for ch, off in doc["lost_examples"])
        msgs.append(
            f"DELIVERY CHECK FAILED: {doc['lost']} lost, {doc['duplicated']} duplicated, "
            f"{doc['reordered']} out of order over {doc['subscriptions_checked']} subscriptions"
            + (f" (first lost: {ex})" if ex else "")
        )
    if doc["scenario"] in ("fanout", "churn"):
        if doc["connections"]["opened"] < doc["connections"]["requested"]:
            msgs.append(
                f"only {doc['connections']['opened']} of {doc['connections']['requested']} "
                "subscribers connected: delivery to the others was not checked"
            )
        if doc["published"] == 0:
            msgs.append("no publication was sent: nothing was checked")
    if doc["connections"]["opened"] == 0 and doc["connections"]["requested"]:
        msgs.append("no connection could be opened")
    return msgs


def summary(doc: dict[str, Any]) -> str:
    lat, cl = doc["latency_ms"], doc["client"]
    lines = [
        f"scenario {doc['scenario']}: delivered {doc['delivered']} "
        f"({doc['deliveries_per_s']:.0f}/s), published {doc['published']}",
        f"latency ms: p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} "
        f"p99.9 {lat['p999']} max {lat['max']}",
        f"lost {doc['lost']}, duplicated {doc['duplicated']}, reordered {doc['reordered']} "
        f"({doc['subscriptions_checked']} subscriptions checked)",
        f"connections: {doc['connections']['opened']}/{doc['connections']['requested']} opened "
        f"at {doc['connections']['connect_rate_per_s']}/s, "
        f"{doc['connections']['still_open']} open at the end",
        f"client: {cl['workers']} worker(s), {cl['cores']} cores, "
        f"{cl['cpu_us_per_frame']} µs CPU/frame, {cl['cores_per_100k_deliveries_s']} cores per "
        f"100k deliveries/s",
    ]
    if doc["errors"]:
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in doc["errors"].items()))
    s = doc.get("server", {})
    if "cpu_us_per_delivery" in s:
        lines.append(f"server: {s['cpu_s']} s CPU, {s['cpu_us_per_delivery']} µs per delivery")
    elif s:
        lines.append(
            f"server: {s.get('bytes_per_connection')} bytes RSS per connection, "
            f"{s.get('cpu_us_per_connection')} µs CPU per connection"
            + (f" (stats: {s['stats_error']})" if s.get("stats_error") else "")
        )
    return "\n".join(lines)


def _per(results: dict[Any, dict[str, Any]], amount: str, count: str) -> float | None:
    """Sum of `amount` over sum of `count` across workers (older workers report neither)."""
    total = sum(r.get(count, 0) for r in results.values())
    return round(sum(r.get(amount, 0) for r in results.values()) / total, 1) if total else None
