"""The long multi-host run: 30,000 connections through nginx to three hosts, one host stopped.

The topology of tests/test_multihost.py (network namespaces on a bridge, Redis Cluster across
the hosts, the MongoDB-compatible server, nginx with deploy/nginx/switchboard.conf and TLS),
driven by the load tester (`switchboard_load fanout`, picows over wss://) from a client
namespace of its own, with publications through nginx's HTTP API. When the load has run
`--duration` seconds, host h1's Switchboard gets SIGTERM: it drains its clients, which reconnect
through nginx to the other hosts and resubscribe with `since`. The tester's delivery check
covers every subscription across that move. Needs root. Prints and writes the figures
docs/scaling.md asks for: connections, deliveries/s, p99, lost, seconds until every drained
client was live again. Bounded: it stops by itself after `--duration + --after` and the drain.

    sudo .venv/bin/python -m bench.multihost --connections 30000 --duration 60 \
        --json bench/results/multihost.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

import orjson

from tests.multihost import API_KEY, ROOT, MultiHost, available


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=30_000)
    p.add_argument("--channels", type=int, default=100)
    p.add_argument("--rate", type=float, default=30.0, help="publications/s, all channels")
    p.add_argument("--duration", type=float, default=60.0, help="seconds before a host stops")
    p.add_argument("--after", type=float, default=40.0, help="seconds after it stopped")
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
    tester: subprocess.Popen[str] | None = None
    try:
        hosts.start()
        ns = hosts.net.add("c0", 100)
        # One source address: widen its ephemeral ports (per namespace) past 30,000 to nginx.
        subprocess.run([*ns.prefix, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"])
        cmd = [*ns.prefix, sys.executable, "-m", "switchboard_load", "fanout", "--allow-remote"]
        cmd += ["--url", hosts.url, "--api-url", f"https://{hosts.lb.addr}", "--api-key", API_KEY]
        cmd += ["--subscribers", str(args.connections), "--channels", str(args.channels)]
        cmd += ["--rate", str(args.rate), "--duration", str(args.duration + args.after)]
        cmd += ["--connect-rate", "1000", "--connect-timeout", "30", "--drain", "60"]
        cmd += ["--json", str(work / "load.json")]
        env = {**os.environ, "SSL_CERT_FILE": str(hosts.ca)}
        tester = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        assert tester.stderr is not None
        loaded = _watch(tester.stderr, work / "load.log")
        if not loaded.wait(args.connections / 200 + 120):
            raise RuntimeError(f"the tester never connected; see {work / 'load.log'}")
        time.sleep(args.duration)
        before = _cpu_by_role(hosts)
        marked = time.time()
        hosts.stop_server(hosts.apps[0])  # returns once h1 has drained and exited
        time.sleep(max(0.0, marked + args.after - time.time()))
        after = _cpu_by_role(hosts)
        tester.wait(600)
        result = _figures(orjson.loads((work / "load.json").read_bytes()), marked)
        result["cpu_s_after_stop"] = {
            k: round(v - before.get(k, 0.0), 1) for k, v in sorted(after.items())
        }
    finally:
        if tester is not None and tester.poll() is None:
            tester.kill()
        hosts.close()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    if result["lost"] or result["still_reconnecting"]:
        print(f"logs kept in {work}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)  # the run's services' data: about 20 MB
    return 0


def _watch(stream: IO[str], log: Path) -> threading.Event:
    """Copy the tester's progress to `log`; the event is set once every client connected
    (its `connected N/N` line) and the load begins."""
    loaded = threading.Event()

    def copy() -> None:
        with open(log, "a") as out:
            for line in stream:
                out.write(line)
                out.flush()
                if line.startswith("connected "):
                    loaded.set()

    threading.Thread(target=copy, daemon=True).start()
    return loaded


def _cpu_by_role(hosts: MultiHost) -> dict[str, float]:
    """CPU seconds so far of every process in the topology and of the children it reaped, by
    namespace and program (the client namespace's are the tester's): where the cores went."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for host in hosts.net.hosts.values():
        pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue  # gone meanwhile
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            key = f"{host.name}:{comm}"
            # Own time and reaped children's (nginx's master reaps the workers a reload ends).
            used = sum(int(f) for f in fields[11:15])
            out[key] = out.get(key, 0.0) + used / tick
    return out


def _figures(doc: dict[str, Any], marked: float) -> dict[str, Any]:
    """The figures docs/scaling.md reports, from the tester's result document."""
    conns = doc["connections"]
    back = conns["last_reconnect_at"]
    return {
        "connections": conns["opened"],
        "still_open": conns["still_open"],
        "deliveries": doc["delivered"],
        "deliveries_per_s": doc["deliveries_per_s"],
        "published": doc["published"],
        "latency_ms": doc["latency_ms"],
        "lost": doc["lost"],
        "duplicated": doc["duplicated"],
        "reordered": doc["reordered"],
        "moved": conns["reconnected"],
        "still_reconnecting": conns["still_reconnecting"],
        "live_again_s": round(back - marked, 3) if back else None,
        "errors": doc["errors"],
        "client_cores": doc["client"]["cores"],
    }


if __name__ == "__main__":
    sys.exit(main())
