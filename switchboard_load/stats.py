"""Latency statistics: exact percentiles for small samples, a mergeable log histogram for runs.

Why a histogram: a run at 100,000 deliveries/s for a minute yields millions of latencies spread over
several processes. Log-spaced buckets (1 % wide) keep every worker's record small, merge by adding,
and still give p99.9 within 1 %, which is far finer than the run-to-run noise of a shared machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: Bucket i holds latencies v (µs) with floor(log1p(v) * SCALE) == i; 1.01 = 1 % wide buckets.
SCALE = 1.0 / math.log(1.01)
#: Enough buckets for latencies up to about 20 minutes.
NBUCKETS = int(math.log1p(1.2e9) * SCALE) + 2
PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def percentile(values: Sequence[float], q: float) -> float:
    """Exact percentile by the nearest-rank method (the value at rank ceil(q/100 * n)).

    >>> percentile([1, 2, 3, 4], 50)
    2
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Histogram:
    """Counts of latencies in µs in log buckets, with the exact maximum kept aside."""

    def __init__(self) -> None:
        self.counts = np.zeros(NBUCKETS, dtype=np.int64)
        self.max_us = 0.0
        self.total = 0

    def add_many(self, latencies_us: Iterable[float]) -> None:
        """Add a batch of latencies (µs); negative values (clock skew) count as zero."""
        arr = np.fromiter(latencies_us, dtype=np.float64)
        if arr.size == 0:
            return
        np.maximum(arr, 0.0, out=arr)
        idx = np.minimum((np.log1p(arr) * SCALE).astype(np.int64), NBUCKETS - 1)
        self.counts += np.bincount(idx, minlength=NBUCKETS)
        self.max_us = max(self.max_us, float(arr.max()))
        self.total += int(arr.size)

    def merge(self, other: Histogram) -> None:
        self.counts += other.counts
        self.max_us = max(self.max_us, other.max_us)
        self.total += other.total

    def percentile_us(self, q: float) -> float:
        """The q-th percentile (nearest rank), as the middle of its bucket, capped at the max."""
        if self.total == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100 * self.total))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        mid = math.expm1((i + 0.5) / SCALE)
        return min(mid, self.max_us)

    def summary_ms(self) -> dict[str, float]:
        """p50/p90/p99/p999/max in milliseconds, rounded to µs: the result document's shape."""
        out = {name: round(self.percentile_us(q) / 1000, 3) for name, q in PERCENTILES.items()}
        out["max"] = round(self.max_us / 1000, 3)
        return out

    def to_sparse(self) -> dict[str, object]:
        """A small picklable/JSON form: only the non-empty buckets."""
        nz = np.nonzero(self.counts)[0]
        return {"b": {int(i): int(self.counts[i]) for i in nz}, "max": self.max_us, "n": self.total}

    @classmethod
    def from_sparse(cls, data: Mapping[str, object]) -> Histogram:
        h = cls()
        buckets = data["b"]
        assert isinstance(buckets, Mapping)
        for i, c in buckets.items():
            h.counts[int(i)] = int(c)
        h.max_us = float(data["max"])  # type: ignore[arg-type]
        h.total = int(data["n"])  # type: ignore[call-overload]
        return h
