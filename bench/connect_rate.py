"""Connects per second into one server process, each with a token, the hello and a subscribe,
driven by a client cheap enough not to be the limit (bench/node/connect.js).

The suite's `connect-10k` uses the Python load tester, which spends about 350 µs of its own CPU
per connect: on two cores it tops out near 2,500-3,000 connects/s whatever the server costs.
Here the server runs on core 0 and the raw-socket Node client on core 1.

    python -m bench.connect_rate [--connections 10000] [--rate 8000] [--runs 3]
                                 [--targets switchboard,node]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from bench.servers import (
    API_KEY,
    NODE_DIR,
    SERVER_CPUS,
    TOKEN_SECRET,
    Running,
    started_node,
    started_switchboard,
)
from switchboard_load import serverstats

CLIENT = NODE_DIR / "connect.js"


def sources() -> str:
    """Eight loopback source addresses not used in the last minutes: the client binds each
    connection's address first, so the kernel searches that address's ephemeral ports, and
    ports an earlier run left in TIME_WAIT raised the client's CPU per connect from 120 µs
    to 1,800 µs over a few runs (from 127.0.0.1 alone it was 220 µs)."""
    block = next(_BLOCKS)
    return f"127.0.{block}.2-127.0.{block}.9"


_BLOCKS = itertools.cycle(random.sample(range(1, 255), 254))


def one_run(srv: Running, connections: int, rate: int) -> dict[str, Any]:
    """Connect `connections` clients; the client's report plus the server's CPU per connection."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed: this benchmark's client needs Node.js 20")
    url = serverstats.stats_url(srv.ws_url, None)
    before = serverstats.cpu_seconds(serverstats.fetch(url, API_KEY))
    argv = [node, str(CLIENT), "--url", srv.ws_url, "--connections", str(connections)]
    argv += ["--rate", str(rate), "--token-secret", TOKEN_SECRET, "--sources", sources()]
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        argv = ["taskset", "-c", ",".join(map(str, cores[1:])), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    after = serverstats.cpu_seconds(serverstats.fetch(url, API_KEY))
    if not done.stdout.strip():
        raise SystemExit(f"the connect client failed: {done.stderr[-800:]}")
    doc: dict[str, Any] = json.loads(done.stdout)
    if before is not None and after is not None and doc["done"]:
        doc["server_us_per_connection"] = round((after - before) / doc["done"] * 1e6, 1)
    doc["client_us_per_connection"] = round(doc["cpu_s"] / max(doc["done"], 1) * 1e6, 1)
    return doc


TARGETS: dict[str, Callable[[int], AbstractContextManager[Running]]] = {
    "switchboard": lambda n: started_switchboard(max_connections=n + 500),
    "node": lambda n: started_node(),
}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.connect_rate")
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--rate", type=int, default=8_000, help="connects asked per second")
    p.add_argument("--runs", type=int, default=3, help="runs per target, a fresh server each")
    p.add_argument("--targets", default="switchboard,node")
    args = p.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    os.environ[SERVER_CPUS] = str(cores[0])  # the servers on the first core, the client not
    for name in args.targets.split(","):
        runs = []
        for _ in range(args.runs):
            with TARGETS[name](args.connections) as srv:
                runs.append(one_run(srv, args.connections, args.rate))
            print(name, json.dumps(runs[-1]), flush=True)
        rates = [r["connects_per_s"] for r in runs]
        cpu = [r["server_us_per_connection"] for r in runs if "server_us_per_connection" in r]
        print(
            f"{name}: median {statistics.median(rates):,.0f} connects/s "
            f"(runs {', '.join(f'{r:,.0f}' for r in rates)}), "
            f"server {statistics.median(cpu) if cpu else float('nan'):.0f} µs CPU per connection, "
            f"failed {sum(r['failed'] for r in runs)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
