"""End-to-end runs of the load tester against real servers, as subprocesses, in a few seconds each.

The broken baseline drops exactly one delivery (offset 5 of the channel, to its first subscriber):
the tester must report exactly that one lost publication and exit non-zero.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.servers import API_KEY, TOKEN_SECRET, started_baseline, started_switchboard


def run_load(
    args: list[str], tmp_path: Path, timeout: float = 60
) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "switchboard_load", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    doc = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, doc, proc.stdout + proc.stderr


def assert_clean(rc: int, doc: dict[str, Any], output: str) -> None:
    assert rc == 0, output
    assert (doc["lost"], doc["duplicated"], doc["reordered"]) == (0, 0, 0), output
    for key in ("scenario", "delivered", "deliveries_per_s", "errors", "params"):
        assert key in doc
    assert set(doc["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}


def test_one_dropped_publication_is_reported_exactly(tmp_path: Path) -> None:
    with started_baseline(drop_offset=5) as srv:
        rc, doc, output = run_load(
            [
                "fanout",
                "--url",
                srv.ws_url,
                "--subscribers",
                "50",
                "--publishers",
                "1",
                "--rate",
                "50",
                "--channels",
                "1",
                "--duration",
                "1.5",
                "--quiet",
            ],
            tmp_path,
        )
    assert rc == 2, output
    assert doc["lost"] == 1 and doc["duplicated"] == 0 and doc["reordered"] == 0
    assert doc["lost_examples"] == [["bench.0", 5]]
    assert "DELIVERY CHECK FAILED: 1 lost" in output
    assert doc["delivered"] == 50 * doc["published"] - 1


def test_fanout_against_baseline_two_workers_and_sources(tmp_path: Path) -> None:
    plot = tmp_path / "run.png"
    with started_baseline() as srv:
        rc, doc, output = run_load(
            [
                "fanout",
                "--url",
                srv.ws_url,
                "--subscribers",
                "300",
                "--publishers",
                "2",
                "--rate",
                "60",
                "--channels",
                "3",
                "--duration",
                "3",
                "--workers",
                "2",
                "--source-addresses",
                "127.0.0.2-127.0.0.4",
                "--plot",
                str(plot),
            ],
            tmp_path,
        )
    assert_clean(rc, doc, output)
    assert doc["connections"]["opened"] == 300 and doc["client"]["workers"] == 2
    assert doc["published"] >= 150
    assert doc["delivered"] == doc["published"] * 100  # 300 subscribers over 3 channels
    assert doc["series"] and plot.stat().st_size > 10_000
    assert doc["client"]["cpu_us_per_frame"] is not None


def test_echo_and_hold_against_baseline(tmp_path: Path) -> None:
    with started_baseline() as srv:
        rc, doc, output = run_load(
            ["echo", "--url", srv.ws_url, "--connections", "20", "--duration", "1.5"], tmp_path
        )
        assert_clean(rc, doc, output)
        assert doc["round_trips_per_s"] > 100
        rc, doc, output = run_load(
            [
                "hold",
                "--url",
                srv.ws_url,
                "--connections",
                "300",
                "--duration",
                "1",
                "--api-key",
                API_KEY,
            ],
            tmp_path,
        )
    assert_clean(rc, doc, output)
    assert doc["connections"]["still_open"] == 300
    assert doc["server"]["bytes_per_connection"] is not None, doc["server"]


def test_small_runs_against_switchboard(tmp_path: Path) -> None:
    with started_switchboard() as srv:
        rc, doc, output = run_load(
            [
                "fanout",
                "--url",
                srv.ws_url,
                "--subscribers",
                "200",
                "--publishers",
                "2",
                "--rate",
                "50",
                "--channels",
                "2",
                "--duration",
                "2",
                "--channel-prefix",
                "bench:",
                "--token-secret",
                TOKEN_SECRET,
            ],
            tmp_path,
        )
        assert_clean(rc, doc, output)
        assert doc["delivered"] == doc["published"] * 100
        rc, doc, output = run_load(
            [
                "churn",
                "--url",
                srv.ws_url,
                "--subscribers",
                "50",
                "--rate",
                "30",
                "--churn-rate",
                "40",
                "--churn-life",
                "0.5",
                "--duration",
                "2",
                "--channel-prefix",
                "bench:",
                "--api-url",
                srv.http_url,
                "--api-key",
                API_KEY,
                "--publishers",
                "0",
            ],
            tmp_path,
        )
        assert_clean(rc, doc, output)
        assert doc["connections"]["churn_opened"] >= 60
        rc, doc, output = run_load(
            [
                "hold",
                "--url",
                srv.ws_url,
                "--connections",
                "200",
                "--duration",
                "1",
                "--api-key",
                API_KEY,
            ],
            tmp_path,
        )
    assert_clean(rc, doc, output)
    assert doc["server"]["bytes_per_connection"] is not None, doc["server"]


def test_every_publication_refused_fails_naming_the_refusal(tmp_path: Path) -> None:
    """`feed:` channels take publications from the server alone: the tester's are all refused."""
    with started_switchboard() as srv:
        rc, doc, output = run_load(
            [
                "fanout",
                "--url",
                srv.ws_url,
                "--subscribers",
                "10",
                "--publishers",
                "1",
                "--rate",
                "20",
                "--channels",
                "1",
                "--channel-prefix",
                "feed:",
                "--duration",
                "1",
                "--drain",
                "1",
                "--quiet",
            ],
            tmp_path,
        )
    assert rc == 2, output
    assert doc["lost"] == 0 and doc["published"] > 0
    assert f"FAIL: PUBLICATIONS REFUSED: {doc['published']} of {doc['published']} sent" in output
    assert "error:forbidden" in output and "FAIL: NOTHING DELIVERED" in output


def test_both_encodings_report_bytes_per_delivery(tmp_path: Path) -> None:
    """`--encoding msgpack` delivers everything in binary frames, and fewer bytes than JSON."""
    per_delivery = {}
    with started_switchboard() as srv:
        for encoding in ("json", "msgpack"):
            rc, doc, output = run_load(
                [
                    "fanout",
                    "--url",
                    srv.ws_url,
                    "--encoding",
                    encoding,
                    "--subscribers",
                    "50",
                    "--rate",
                    "20",
                    "--duration",
                    "1.5",
                    "--channel-prefix",
                    "bench:",
                ],
                tmp_path,
            )
            assert_clean(rc, doc, output)
            assert doc["delivered"] == doc["published"] * 50
            assert doc["client"]["encoding"] == encoding
            per_delivery[encoding] = doc["client"]["payload_bytes_per_delivery"]
    assert 0 < per_delivery["msgpack"] < per_delivery["json"], per_delivery
