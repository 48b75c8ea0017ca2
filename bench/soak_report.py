"""The soak's verdict and picture: growth after the warm-up, latency against its first value.

"First" and "last" are means over a minute of samples (at most six, at least one), so that one
garbage collection or one busy moment of a shared machine does not decide a 30-minute run.
"""

from __future__ import annotations

import statistics
from typing import Any

MAX_GROWTH = 0.05
MAX_P99_FACTOR = 2.0


def missed(doc: dict[str, Any], warmup_s: float) -> list[str]:
    """What the run misses of issue 14's soak targets (empty when all held)."""
    out = []
    post = [s for s in doc["samples"] if s["t"] >= warmup_s]
    if len(post) < 2:
        return [f"only {len(post)} samples after the warm-up: too short to judge"]
    w = max(1, min(6, len(post) // 3))
    for key in ("rss_bytes", "open_files"):
        first = statistics.fmean(s[key] for s in post[:w])
        last = statistics.fmean(s[key] for s in post[-w:])
        growth = (last - first) / first if first else 0.0
        doc.setdefault("growth", {})[key] = round(growth, 4)
        if growth >= MAX_GROWTH:
            out.append(f"{key} grew {growth:.1%} after the warm-up ({first:.0f} -> {last:.0f})")
    p99s = [s["p99_ms"] for s in post[:w] if s["p99_ms"] is not None]
    if not p99s:
        out.append("no delivery latency was measured after the warm-up")
    else:
        first_p99 = statistics.median(p99s)
        worst = max((s for s in post if s["p99_ms"] is not None), key=lambda s: s["p99_ms"])
        doc["p99_first_ms"], doc["p99_worst_ms"] = first_p99, worst["p99_ms"]
        if worst["p99_ms"] > MAX_P99_FACTOR * first_p99:
            out.append(
                f"p99 {worst['p99_ms']} ms at {worst['t']:.0f} s is more than "
                f"{MAX_P99_FACTOR}x the first {first_p99} ms"
            )
    load = doc.get("load", {})
    if load.get("returncode") != 0:
        out.append(f"the load tester exited with {load.get('returncode')}")
    for key in ("lost", "duplicated", "reordered"):
        if load.get(key):
            out.append(f"the load tester counted {load[key]} {key}")
    return out


def plot(doc: dict[str, Any], path: str, warmup_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = doc["samples"]
    t = [s["t"] / 60 for s in samples]
    panels = [
        ("RSS of workers (MB)", [s["rss_bytes"] / 2**20 for s in samples]),
        ("open files of workers", [s["open_files"] for s in samples]),
        ("connections", [s["connections"] for s in samples]),
        (
            "loop lag, worst worker (ms)",
            [max(s["loop_lag_ms"].values(), default=None) for s in samples],
        ),
        ("p99 delivery latency (ms)", [s["p99_ms"] for s in samples]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.2 * len(panels)), sharex=True)
    for ax, (title, ys) in zip(axes, panels, strict=True):
        ax.plot(t, [float("nan") if y is None else y for y in ys], marker=".", linewidth=1)
        ax.axvline(warmup_s / 60, color="grey", linestyle=":")
        ax.set_ylabel(title, fontsize="small")
    axes[-1].set_xlabel("minutes (dotted: end of warm-up)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
