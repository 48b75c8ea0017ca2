"""Three hosts (network namespaces) behind nginx over TLS, a Redis Cluster across them.

The short version of the multi-host run (bench/multihost.py is the long one): a few hundred
clients connect with wss:// through nginx, one host's Switchboard is stopped, its clients move
to the other hosts and recover with nothing acknowledged lost. Needs root (namespaces) and
Debian's nginx, which `make services` installs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.multihost import API_KEY, ROOT, MultiHost, available


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[MultiHost]:
    why = available()
    if why is not None:
        pytest.fail(f"the multi-host test cannot run here: {why}")
    topology = MultiHost(tmp_path)
    try:
        topology.start()
        yield topology
    finally:
        topology.close()


def test_a_stopped_host_moves_its_clients_and_nothing_acknowledged_is_lost(
    hosts: MultiHost, tmp_path: Path
) -> None:
    # Two drivers publish into the same ten channels, as several application processes would.
    outs = [tmp_path / f"clients{i}.json" for i in range(2)]
    env = {**os.environ, "SSL_CERT_FILE": str(hosts.ca)}  # trust the test's certificate
    drivers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.multihost_clients", "--url", hosts.url]
            + ["--connections", "150", "--channels", "10", "--rate", "5", "--json", str(out)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    try:
        for d in drivers:
            assert d.stdout is not None and d.stdout.readline().strip() == "ready"
        # Figures reach Redis with each process's heartbeat: wait until all 320 are counted.
        _wait_for(lambda: sum(_connections_per_host(hosts).values()) == 320)
        spread = _connections_per_host(hosts)
        assert all(n > 0 for n in spread.values()), spread  # nginx spread them over all three
        time.sleep(1.0)
        _tell(drivers, "mark")
        assert hosts.stop_server(hosts.apps[0]) == 0
        _wait_for(
            lambda: (
                f"{hosts.apps[0].addr}:8000 max_fails=1 fail_timeout=5s down" in hosts.upstreams()
            )
        )
        time.sleep(4.0)
        _tell(drivers, "stop")
        for d in drivers:
            assert d.wait(120) == 0
    finally:
        for d in drivers:
            if d.poll() is None:
                d.kill()
                d.wait(10)
            assert d.stdin is not None and d.stdout is not None
            d.stdin.close()
            d.stdout.close()
    results: list[dict[str, Any]] = [orjson.loads(out.read_bytes()) for out in outs]
    result = {k: sum(r[k] for r in results) for k in ("acknowledged", "lost", "doubled")}
    result |= {k: sum(r[k] for r in results) for k in ("out_of_order", "unrecovered")}
    result |= {k: sum(r[k] for r in results) for k in ("still_down", "moved")}
    assert all(r["acknowledged"] > 150 for r in results), results
    assert result["lost"] == 0, results
    assert result["doubled"] == 0 and result["out_of_order"] == 0, results
    assert result["unrecovered"] == 0, results
    assert result["still_down"] == 0, results
    assert result["moved"] >= spread[hosts.apps[0].name] // 2, result  # h1's clients moved
    # nginx passed on the client's own address (the root namespace's, not its own).
    access = (hosts.workdir / "h2.log").read_text(errors="replace")
    assert hosts.net.gateway in access and hosts.lb.addr not in access


def _tell(drivers: list[subprocess.Popen[str]], line: str) -> None:
    for d in drivers:
        assert d.stdin is not None
        d.stdin.write(line + "\n")
        d.stdin.flush()


def _connections_per_host(hosts: MultiHost) -> dict[str, int]:
    """Connections held by each host's workers (`/api/stats` lists every process of every
    host; the hosts share a host name, so processes are told apart by pid)."""
    req = urllib.request.Request(
        f"http://{hosts.apps[1].addr}:8000/api/stats",
        headers={"Authorization": f"apikey {API_KEY}"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        processes = orjson.loads(resp.read())["processes"]
    counts = {}
    for name, proc in hosts.servers.items():
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        pids = {int(pid) for pid in children}
        counts[name] = sum(p["connections"] for p in processes if p["pid"] in pids)
    return counts


def _wait_for(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
