"""bench.rolling: per-process accept rates during a rolling restart, computed and measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.rolling import RollingParams, missed, rates


def test_rates_compare_each_process_peak_with_the_steady_share() -> None:
    p = RollingParams(processes=2, bin_s=1.0)
    ramp = [(i / 100, "a" if i % 2 else "b") for i in range(100)]  # 100/s over 2: 50/s each
    roll = [(10.0 + i / 40, "c") for i in range(40)]  # 40 in the first second after SIGHUP
    roll += [(11.0 + i / 120, "b") for i in range(120)]  # a burst of 120 in one second
    doc = rates(ramp + roll, (0.0, 0.99), (10.0, 13.0), p)
    assert abs(doc["steady_per_process_per_s"] - 50.5) < 0.1
    assert doc["processes"]["c"]["peak_per_s"] == 40.0
    assert doc["processes"]["b"]["series_per_s"] == [0.0, 120.0]
    assert doc["peak_per_s"] == 120.0 and doc["ratio"] > 2
    report = {**doc, "connected_before": 100, "connected_after": 100}
    assert len(missed(report, RollingParams(clients=100))) == 1


def test_a_small_rolling_restart_keeps_every_client_and_the_rate_steady(tmp_path: Path) -> None:
    out = tmp_path / "rolling.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "bench.rolling", "--clients", "150"),
            *("--connect-rate", "100", "--drain-s", "1", "--steady", "0.5"),
            *("--json", str(out), "--plot", str(tmp_path / "rolling.png")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    doc = json.loads(out.read_text())
    assert doc["connected_before"] == doc["connected_after"] == 150, proc.stdout + proc.stderr
    assert doc["errors"].get("drained", 0) >= 150  # every client was drained at least once
    assert len(doc["processes"]) >= 3  # the two replacements accepted too
    assert (tmp_path / "rolling.png").stat().st_size > 0
    # 150 clients drained in about 3 s by 20 ms ticks: the spread, not the target, is checked
    # here (the target is for 10,000 clients and drain_s 10: docs/reliability.md).
    assert doc["roll_s"] > 1.0
