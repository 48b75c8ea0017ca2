"""The soak's verdict on samples written by hand: growth after the warm-up, p99 against the first
minute's, the load tester's delivery check; and its PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.soak_report import missed, plot


def samples(
    rss: Sequence[int], p99: Sequence[float | None], files: int = 100
) -> list[dict[str, Any]]:
    return [
        {
            "t": 10.0 * (i + 1),
            "rss_bytes": r,
            "open_files": files,
            "connections": 50,
            "p99_ms": p,
            "loop_lag_ms": {"a": 1.0},
        }
        for i, (r, p) in enumerate(zip(rss, p99, strict=True))
    ]


def doc(rss: Sequence[int], p99: Sequence[float | None], returncode: int = 0) -> dict[str, Any]:
    load = {"returncode": returncode, "lost": 0, "duplicated": 0, "reordered": 0}
    return {"samples": samples(rss, p99), "load": load}


def test_a_flat_run_after_the_warmup_meets_the_targets() -> None:
    # The warm-up (first 30 s) may grow as it likes.
    d = doc([50, 80] + [100] * 12 + [104] * 6, [9.0, 30.0] + [10.0] * 18)
    assert missed(d, warmup_s=30) == []
    assert d["growth"] == {"rss_bytes": 0.04, "open_files": 0.0}
    assert d["p99_first_ms"] == 10.0


def test_growth_of_five_percent_or_more_is_a_miss() -> None:
    d = doc([100] * 6 + [106] * 6, [10.0] * 12)
    (problem,) = missed(d, warmup_s=0)
    assert problem.startswith("rss_bytes grew 6.0%")


def test_one_sample_above_twice_the_first_p99_is_a_miss() -> None:
    d = doc([100] * 12, [10.0] * 5 + [21.0] + [10.0] * 6)
    (problem,) = missed(d, warmup_s=0)
    assert "p99 21.0 ms at 60 s" in problem


def test_a_failed_delivery_check_or_a_run_too_short_is_a_miss(tmp_path: Path) -> None:
    d = doc([100] * 4, [10.0, None, 10.0, 10.0], returncode=2)
    d["load"]["lost"] = 3
    assert missed(d, warmup_s=0) == [
        "the load tester exited with 2",
        "the load tester counted 3 lost",
    ]
    assert missed(doc([100] * 4, [10.0] * 4), warmup_s=35)[0].startswith("only 1 samples")
    plot(d, str(tmp_path / "soak.png"), warmup_s=10)
    assert (tmp_path / "soak.png").read_bytes().startswith(b"\x89PNG")
