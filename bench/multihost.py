"""The long multi-host run: 30,000 connections through nginx to three hosts, one host stopped.

The topology of tests/test_multihost.py (network namespaces on a bridge, Redis Cluster across
the hosts, the MongoDB-compatible server, nginx with deploy/nginx/switchboard.conf and TLS),
driven by tests/multihost_clients.py from several client namespaces of their own (each has its
own address and ephemeral ports, so 30,000 connections fit). Needs root. Prints and writes the
figures docs/scaling.md asks for: connections, deliveries/s, p99, lost, seconds until every
client was live again. Bounded: it stops by itself after `--duration` plus the settle time.

    sudo .venv/bin/python -m bench.multihost --connections 30000 --duration 60 \
        --json bench/results/multihost.json
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tests.multihost import ROOT, MultiHost, available

#: Connections one client process drives (one core of Python clients, about).
PER_DRIVER = 7500


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=30_000)
    p.add_argument("--channels", type=int, default=100)
    p.add_argument("--rate", type=float, default=2.0, help="publications/s per channel")
    p.add_argument("--duration", type=float, default=60.0, help="seconds before a host stops")
    p.add_argument("--after", type=float, default=30.0, help="seconds after it stopped")
    p.add_argument("--processes", type=int, default=2, help="Switchboard processes per host")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    why = available()
    if why is not None:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    if not 0 < args.connections <= 100_000 or args.duration > 3600 or args.after > 600:
        print("bounded: at most 100,000 connections and an hour", file=sys.stderr)
        return 2
    # Stopped early (SIGTERM, Ctrl-C), it still takes its namespaces and processes down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(tempfile.mkdtemp(prefix="switchboard-multihost-"))
    hosts = MultiHost(work, processes=args.processes, drain_s=10.0)
    drivers: list[subprocess.Popen[str]] = []
    try:
        hosts.start()
        count = -(-args.connections // PER_DRIVER)
        for i in range(count):
            ns = hosts.net.add(f"c{i}", 100 + i)
            n = min(PER_DRIVER, args.connections - i * PER_DRIVER)
            cmd = [*ns.prefix, sys.executable, "-m", "tests.multihost_clients", "--url", hosts.url]
            cmd += ["--connections", str(n), "--channels", str(args.channels)]
            cmd += ["--rate", str(args.rate / count), "--settle", "60"]
            cmd += ["--json", str(work / f"clients{i}.json")]
            env = {**os.environ, "SSL_CERT_FILE": str(hosts.ca)}
            drivers.append(
                subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            )
        for d in drivers:
            assert d.stdout is not None and d.stdout.readline().strip() == "ready"
        started = time.monotonic()
        time.sleep(args.duration)
        _tell(drivers, "mark")
        hosts.stop_server(hosts.apps[0])
        time.sleep(args.after)
        _tell(drivers, "stop")
        for d in drivers:
            d.wait(300)
        elapsed = time.monotonic() - started
        parts = [orjson.loads((work / f"clients{i}.json").read_bytes()) for i in range(count)]
        result = _merge(parts, elapsed)
    finally:
        for d in drivers:
            if d.poll() is None:
                d.kill()
        hosts.close()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0 if result["lost"] == 0 else 1


def _tell(drivers: list[subprocess.Popen[str]], line: str) -> None:
    for d in drivers:
        assert d.stdin is not None
        d.stdin.write(line + "\n")
        d.stdin.flush()


def _merge(parts: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    total = {
        k: sum(p[k] or 0 for p in parts) for k in ("connections", "acknowledged", "deliveries")
    }
    total.update({k: sum(p[k] for p in parts) for k in ("lost", "doubled", "unrecovered", "moved")})
    total["still_down"] = sum(p["still_down"] for p in parts)
    total["deliveries_per_s"] = round(total["deliveries"] / elapsed)
    total["p99_s_worst_driver"] = max((p["p99_s"] or 0) for p in parts)
    total["live_again_s"] = max((p["live_again_s"] or 0) for p in parts)
    return total


if __name__ == "__main__":
    sys.exit(main())
