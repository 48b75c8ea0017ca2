"""bench.connect_rate and its Node client: every connect counted once it is subscribed, and a
refused one counted as failed."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.connect_rate import CLIENT, one_run
from bench.servers import started_switchboard


def test_the_client_counts_subscribed_connections_and_the_server_cpu() -> None:
    with started_switchboard(max_connections=1_000) as srv:
        doc = one_run(srv, 300, 2_000)
    assert (doc["asked"], doc["done"], doc["failed"]) == (300, 300, 0)
    assert doc["server_us_per_connection"] > 0 and doc["connects_per_s"] > 0


def test_a_refused_token_counts_as_a_failed_connect() -> None:
    with started_switchboard(max_connections=1_000) as srv:
        argv = ["node", str(CLIENT), "--url", srv.ws_url, "--connections", "20"]
        argv += ["--token-secret", "not-the-servers-secret-0123456789", "--timeout", "10"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    doc = json.loads(done.stdout)
    assert (doc["done"], doc["failed"], done.returncode) == (0, 20, 1)


def test_the_command_prints_a_median_per_target() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.connect_rate", "--connections", "200", "--runs", "1"]
        + ["--targets", "switchboard"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "switchboard: median" in done.stdout and "failed 0" in done.stdout, done.stderr
