"""Clients for the multi-host run: many subscribers and a publisher per channel, through nginx.

Run as a child process (`python -m tests.multihost_clients --url wss://...`), with the test's
CA in SSL_CERT_FILE. Prints `ready` once every client is subscribed; reads `mark` (a host is
being stopped now) and `stop` (stop publishing, wait for everything acknowledged to arrive,
report) from stdin; writes its findings as JSON to `--json`.

Each client is the Python client (switchboard_client): it reconnects by itself and resubscribes
with `since`, so what it reports is what an application would see. Publications are told apart
by publisher and number, so several drivers may publish into the same channels (counting each
driver's numbers alone once reported every publication doubled and reordered).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from switchboard_client import Client, Publication, Recovery, SwitchboardError


class Subscriber:
    def __init__(self, url: str, channel: str) -> None:
        self.client = Client(url, min_delay=0.2, max_delay=2.0)
        self.channel = channel
        #: (publisher, n) of every publication delivered: several driver processes publish
        #: into the same channels, each counting n from 0
        self.got: list[tuple[str, int]] = []
        self.latency: list[float] = []
        self.unrecovered = 0
        self.nodes: list[str] = []
        self.down_since: float | None = None
        self.back_at: float | None = None
        self.client.on("recovery", self._recovery)
        self.client.on("state", self._state)

    def _recovery(self, r: Recovery) -> None:
        if not r["recovered"]:
            self.unrecovered += 1

    def _state(self, state: str, retry_in: float | None) -> None:
        now = time.monotonic()
        if state == "connected":
            hello = self.client.hello
            self.nodes.append(str(hello["node"]) if hello is not None else "")
            if self.down_since is not None:
                self.back_at = now
                self.down_since = None
        elif self.down_since is None:
            self.down_since = now

    def on_pub(self, pub: Publication) -> None:
        self.got.append((str(pub["data"]["p"]), int(pub["data"]["n"])))
        self.latency.append(time.time() - float(pub["data"]["t"]))

    async def start(self) -> None:
        await self.client.connect()
        await self.client.subscribe(self.channel, on_publication=self.on_pub)


class Publisher:
    def __init__(self, url: str, channel: str, rate: float) -> None:
        self.client = Client(url, min_delay=0.2, max_delay=2.0)
        self.channel = channel
        self.rate = rate
        self.id = f"{os.getpid()}-{channel}"
        self.acked: list[tuple[str, int]] = []
        self.refused = 0
        self.running = True

    async def run(self) -> None:
        await self.client.connect()
        n = 0
        while self.running:
            try:
                await self.client.publish(self.channel, {"p": self.id, "n": n, "t": time.time()})
                self.acked.append((self.id, n))
            except (TimeoutError, SwitchboardError, ConnectionError, OSError):
                self.refused += 1
            n += 1
            await asyncio.sleep(random.expovariate(self.rate))


def _in_order(got: list[tuple[str, int]]) -> bool:
    """Each publisher's publications arrived in the order it sent them."""
    last: dict[str, int] = {}
    for publisher, n in got:
        if n <= last.get(publisher, -1):
            return False
        last[publisher] = n
    return True


async def read_line() -> str:
    line: str = await asyncio.to_thread(sys.stdin.readline)
    return line.strip()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    channels = [f"mh{i}" for i in range(args.channels)]
    subs = [Subscriber(args.url, channels[i % len(channels)]) for i in range(args.connections)]
    for i in range(0, len(subs), 50):  # connect in steps, as real clients trickle in
        await asyncio.gather(*(s.start() for s in subs[i : i + 50]))
    pubs = [Publisher(args.url, c, args.rate) for c in channels]
    tasks = [asyncio.ensure_future(p.run()) for p in pubs]
    print("ready", flush=True)
    marked = 0.0
    while (line := await read_line()) != "stop":
        if line == "mark":
            marked = time.monotonic()
    for p in pubs:
        p.running = False
    await asyncio.gather(*tasks, return_exceptions=True)
    acked = {p.channel: set(p.acked) for p in pubs}
    deadline = time.monotonic() + args.settle
    while time.monotonic() < deadline:
        if all(acked[s.channel] <= set(s.got) for s in subs):
            break
        await asyncio.sleep(0.2)
    lost = sum(len(acked[s.channel] - set(s.got)) for s in subs)
    doubled = sum(len(s.got) - len(set(s.got)) for s in subs)
    backs = [s.back_at for s in subs if s.back_at is not None and s.back_at >= marked]
    latencies = sorted(x for s in subs for x in s.latency)
    result = {
        "connections": len(subs) + len(pubs),
        "acknowledged": sum(len(a) for a in acked.values()),
        "refused": sum(p.refused for p in pubs),
        "deliveries": sum(len(s.got) for s in subs),
        "lost": lost,
        "doubled": doubled,
        "out_of_order": sum(1 for s in subs if not _in_order(s.got)),
        "unrecovered": sum(s.unrecovered for s in subs),
        "moved": sum(1 for s in subs if len(set(s.nodes)) > 1),
        "still_down": sum(1 for s in subs if s.client.state != "connected"),
        "live_again_s": round(max(backs) - marked, 3) if backs and marked else None,
        "p99_s": latencies[int(len(latencies) * 0.99)] if latencies else None,
    }
    clients = [s.client for s in subs] + [p.client for p in pubs]
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--connections", type=int, default=300)
    p.add_argument("--channels", type=int, default=10)
    p.add_argument("--rate", type=float, default=10.0, help="publications/s per channel")
    p.add_argument("--settle", type=float, default=20.0)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a socket per connection
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 200_000)), hard))
    args.json.write_bytes(orjson.dumps(asyncio.run(main_async(args)), option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
