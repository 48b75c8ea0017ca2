"""Where a held connection's memory goes: a tracemalloc breakdown per connection.

    python -m bench.conn_memory [--connections 2000] [--top 25]

Runs a Switchboard node in this process (in-memory store, the bench namespace) with
tracemalloc on, holds `--connections` clients with a token and one subscription each (the
`hold` scenario of switchboard_load, in a child process), and prints what the held connections
allocated, grouped by the line that allocated it, in bytes per connection, plus the process's
RSS growth per connection. tracemalloc sees Python's allocations only; RSS also counts the
allocator's overhead and fragmentation, so the two differ by that.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import tomllib
import tracemalloc

import psutil
import tornado.testing

from bench.servers import API_KEY, BENCH_NAMESPACE, ONE_ADDRESS, TOKEN_SECRET
from server import assets
from server import config as config_mod
from server.app import build_node, make_app, make_server


async def measure(connections: int, top: int) -> None:
    text = assets.SAMPLE_CONFIG.read_text() + BENCH_NAMESPACE
    env = {
        "SWITCHBOARD_API_KEY": API_KEY,
        "SWITCHBOARD_SECURITY_TOKEN_SECRET": TOKEN_SECRET,
        "SWITCHBOARD_MONGO_URL": "memory:",
        "SWITCHBOARD_LIMITS_COMMAND_RATE": "1000000",
        "SWITCHBOARD_LIMITS_COMMAND_BURST": "1000000",
        "SWITCHBOARD_SERVER_MAX_CONNECTIONS": str(connections + 100),
        **ONE_ADDRESS,
    }
    cfg = config_mod.from_dict(tomllib.loads(text), env=env, dev=True)
    node = build_node(cfg)
    await node.start()
    sock, port = tornado.testing.bind_unused_port()
    server = make_server(make_app(node), cfg)
    server.add_sockets([sock])
    proc = psutil.Process(os.getpid())
    await asyncio.sleep(0.5)
    before = tracemalloc.take_snapshot()
    rss0 = proc.memory_info().rss
    tester = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "switchboard_load",
            "hold",
            "--url",
            f"ws://127.0.0.1:{port}/ws",
            "--connections",
            str(connections),
            "--connect-rate",
            "1000",
            "--duration",
            "600",
            "--subscribe",
            "--channels",
            "100",
            "--channel-prefix",
            "bench:",
            "--token-secret",
            TOKEN_SECRET,
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120 + connections / 100
        while node.hub.subscription_count < connections:
            if time.monotonic() > deadline or tester.poll() is not None:
                raise SystemExit(f"only {node.hub.subscription_count} subscribed")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        after = tracemalloc.take_snapshot()
        rss1 = proc.memory_info().rss
    finally:
        os.killpg(tester.pid, signal.SIGTERM)
        tester.wait(30)
    n = node.hub.client_count
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"{n} connections held, each with a token and one subscription (of 100 channels)")
    print(f"tracemalloc: {total / n:,.0f} bytes per connection; RSS: {(rss1 - rss0) / n:,.0f}")
    print(f"{'bytes/conn':>10}  {'objects/conn':>12}  allocated at")
    for s in stats[:top]:
        frame = s.traceback[0]
        where = f"{os.path.relpath(frame.filename)}:{frame.lineno}"
        print(f"{s.size_diff / n:>10,.0f}  {s.count_diff / n:>12.2f}  {where}")
    server.stop()
    await node.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    tracemalloc.start()
    asyncio.run(measure(args.connections, args.top))


if __name__ == "__main__":
    main()
