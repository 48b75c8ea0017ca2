"""A PNG of a run: latency percentiles and throughput per second (matplotlib, Agg backend).

Why a picture: a p99 that hides a three-second stall, or throughput that sags as connections
churn, shows at a glance in a time series and not at all in a summary.
"""

from __future__ import annotations

from typing import Any


def plot(doc: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    rows = doc["series"]
    t = [r["t"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for key, style in (("p50", "-"), ("p90", "--"), ("p99", "-."), ("p999", ":")):
        ax1.plot(
            t,
            [r.get("latency_ms", {}).get(key, float("nan")) for r in rows],
            "." + style,
            label=key,
        )
    ax1.set_ylabel("latency (ms)")
    ax1.set_yscale("log")
    ax1.yaxis.set_major_formatter(ScalarFormatter())
    ax1.legend(loc="upper left", fontsize="small")
    ax1.grid(True, alpha=0.3)
    ax2.plot(t, [r["delivered"] for r in rows], ".-", label="deliveries/s")
    ax2.set_ylabel("deliveries/s")
    ax2.set_xlabel("seconds since start")
    ax3 = ax2.twinx()  # publications are fewer by the fan-out factor: their own axis
    ax3.plot(t, [r["published"] for r in rows], ".--", color="tab:orange", label="publications/s")
    ax3.set_ylabel("publications/s")
    ax3.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    lines = ax2.get_legend_handles_labels()
    extra = ax3.get_legend_handles_labels()
    ax2.legend(lines[0] + extra[0], lines[1] + extra[1], loc="lower left", fontsize="small")
    ax2.grid(True, alpha=0.3)
    lat = doc["latency_ms"]
    fig.suptitle(
        f"{doc['scenario']}: {doc['deliveries_per_s']:.0f} deliveries/s, "
        f"p99 {lat['p99']} ms, lost {doc['lost']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
