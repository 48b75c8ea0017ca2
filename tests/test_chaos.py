"""A short version of every fault of `python -m bench.chaos`, run for real, so that a regression
in recovery, draining or the rolling restart fails CI: a worker killed, a rolling restart, Redis
restarted with and without its data, MongoDB restarted, under fan-out with history.

One run of the scenario (about 25 s) is shared by the tests, one per fault; the long runs of
docs/reliability.md are benchmarks, not tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from bench.chaos_faults import FAULTS

SHORT = [
    *("--subscribers", "12", "--channels", "3", "--rate", "20"),
    *("--steady", "1", "--settle", "1", "--drain-s", "1", "--final", "15"),
    *("--redis-outage", "0.5", "--mongo-outage", "1"),
]


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("chaos") / "chaos.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.chaos", *SHORT, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    doc = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, doc, proc.stdout + proc.stderr


def window(doc: dict[str, Any], fault: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [w for w in doc["windows"] if w["fault"] == fault]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_under_load_loses_nothing(chaos: tuple[int, dict[str, Any], str], fault: str) -> None:
    rc, doc, output = chaos
    assert doc, output
    w = window(doc, fault)
    assert w["acknowledged"] > 0, output
    breaches = {k: w[k] for k in ("lost_silent", "duplicated", "reordered", "mismatched")}
    breaches |= {k: w[k] for k in ("reused", "not_live")}
    if fault != "redis-empty":  # there the target allows a loss the client is told about
        breaches |= {"lost": w["lost"], "recovered_false": w["recovered_false"]}
    assert not any(breaches.values()), (breaches, w["examples"], output)
    assert w["live_again_s"] <= 10.0, (w, output)


def test_each_fault_did_what_it_says(chaos: tuple[int, dict[str, Any], str]) -> None:
    """The faults really happened: clients cut off by the kill and the rolling restart,
    publishes refused while Redis was down."""
    rc, doc, output = chaos
    assert window(doc, "kill")["disconnects"] > 0, output
    assert window(doc, "hup")["disconnects"] >= 12, output  # every subscriber was drained
    for fault in ("redis-data", "redis-empty"):
        assert window(doc, fault)["refused"].get("unavailable", 0) > 0, output
    assert window(doc, "steady")["disconnects"] == 0


def test_exit_status_says_every_target_held(chaos: tuple[int, dict[str, Any], str]) -> None:
    rc, doc, output = chaos
    assert doc["missed"] == [] and doc["ok"] is True, output
    assert rc == 0, output
    assert "redis-empty" in output and "live_agai" in output  # the table was printed
