"""Clients reconnecting after a restart, with recovery: how long until every one is live again.

    python -m bench.reconnect [--clients 19900] [--workers 4] [--channels 100] [--missed 5]
                              [--client python|node]

Starts the embedded MongoDB-compatible server (the history survives the restart) and one
Switchboard process on it (`bench` namespace: history 100), connects `--clients` clients with a
token each, every one subscribed to one of `--channels` channels, and publishes a few
publications per channel. Then it kills Switchboard (SIGKILL: every socket drops at once),
publishes nothing meanwhile, and starts a new process on the same port. Each client reconnects
on its own (a first try after up to 300 ms of jitter, then every 100-300 ms while refused) and
resubscribes with `since` its last publication; it is live again once that subscribe answers
with `recovered: true`. While they come back, `--missed` publications per channel go out
through the HTTP API, so recovery has something to deliver in the gap.

Reports, from the kill and from the new process answering /readyz: the time until half, 99 %
and all of the clients were live again, and from ready each tenth of them (whether they came
back together, held up by something, or trickled in); all of them from the moment the new
process logged that it listens (the bench sees /readyz answer only once its own request gets
through the storm, sometimes seconds late); the new process's CPU time from ready to the end;
how many recovered, and whether each client got every publication once and in increasing order
across the restart (offsets may jump there: the skipped ones are void, docs/protocol.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import procinfo
from bench.servers import (
    API_KEY,
    BENCH_NAMESPACE,
    NODE_DIR,
    ONE_ADDRESS,
    ROOT,
    TOKEN_SECRET,
    free_port,
    wait_listening,
)
from bench.servers import Running as _Running
from server import assets
from server.store.embedded import EmbeddedMongo
from switchboard_load.client import Client, connect
from switchboard_load.fdlimit import raise_nofile
from switchboard_load.tokens import mint, with_token

SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]
#: Publications per channel before the kill.
BEFORE = 3
#: How long clients wait for the publications still on their way once all are live (Node's
#: client: bench/node/reconnect.js, the same).
EXPECT_WAIT_S = 15.0


# -- the server, restarted on the same port and database --------------------------------------


def start_switchboard(port: int, config: Path, mongo_url: str, clients: int) -> _Running:
    env = {
        **os.environ,
        "SWITCHBOARD_API_KEY": API_KEY,
        "SWITCHBOARD_SECURITY_TOKEN_SECRET": TOKEN_SECRET,
        "SWITCHBOARD_MONGO_URL": mongo_url,
        "SWITCHBOARD_LIMITS_COMMAND_RATE": "1000000",
        "SWITCHBOARD_LIMITS_COMMAND_BURST": "1000000",
        "SWITCHBOARD_SERVER_MAX_CONNECTIONS": str(clients + 100),
        "SWITCHBOARD_SERVER_MAX_SOCKETS": str(clients + 150),  # above the default 19,000
        **ONE_ADDRESS,
    }
    log = config.parent / f"server-{time.time_ns()}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--dev", "--config", str(config), "--port", str(port)]
            # INFO: the one line it logs then is when it began to listen (listening_at).
            + ["--log-level", os.environ.get("BENCH_LOG_LEVEL", "INFO")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            preexec_fn=raise_nofile,
        )
    running = _Running("switchboard", port, proc, log)
    wait_listening(running, 60, "/readyz")
    return running


def listening_at(running: _Running) -> float | None:
    """When the process began to serve its port, by its own log: unlike the answer to /readyz,
    which the bench can only see once its own request gets through the storm (up to seconds
    late, when the listen queue drops its SYN), this is the moment clients could get in."""
    with contextlib.suppress(OSError):
        for line in running.log.read_text().splitlines():
            if '"listening on ' in line:
                ts = orjson.loads(line)["ts"]
                return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    return None


def publish(port: int, channel: str, data: Any) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/publish",
        data=orjson.dumps({"channel": channel, "data": data}),
        headers={"Authorization": f"apikey {API_KEY}", "Content-Type": "application/json"},
    )
    # Long: during the storm a connect can wait out SYN retransmissions (1, 3, 7, 15 s).
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 (loopback)
        resp.read()


# -- a worker process: its share of the clients ------------------------------------------------


class Tracked:
    """One client across the restart: its channel, the last offset seen, what went wrong."""

    __slots__ = ("channel", "client", "offset", "epoch", "live_at", "recovered", "got", "bad")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.client: Client | None = None
        self.offset = 0
        self.epoch = ""
        self.live_at = 0.0
        self.recovered = False
        self.got = 0  # publications received since the first subscribe
        self.bad = 0  # publications doubled or out of order

    def seen(self, offset: int) -> None:
        """Offsets must only increase (across a restart they may jump: skipped ones are void)."""
        if offset <= self.offset:
            self.bad += 1
            return
        self.got += 1
        self.offset = offset

    def on_pub(self, _: Client, msg: dict[str, Any]) -> None:
        self.seen(int(msg["offset"]))


async def attach(t: Tracked, url: str, source: str, since: bool) -> None:
    client = await connect(url, lambda c, m: t.on_pub(c, m), source, timeout=30)
    args: dict[str, Any] = {"channel": t.channel}
    if since:
        args["since"] = {"offset": t.offset, "epoch": t.epoch}
    result = await client.send_command("subscribe", **args)
    for pub in result["missed"]:
        t.seen(int(pub["offset"]))
    t.offset, t.epoch = max(t.offset, int(result["offset"])), str(result["epoch"])
    t.recovered = bool(result["recovered"])
    t.client = client


async def come_back(t: Tracked, url: str, source: str) -> None:
    assert t.client is not None
    await t.client.closed
    await asyncio.sleep(random.uniform(0, 0.3))
    while True:
        try:
            await attach(t, url, source, since=True)
        except Exception:  # refused, reset, timed out: try again
            await asyncio.sleep(random.uniform(0.1, 0.3))
            continue
        t.live_at = time.time()
        return


async def worker(
    index: int, n: int, channels: int, port: int, expect: int, pipe: Connection
) -> None:
    base = f"ws://127.0.0.1:{port}/ws"
    tracked = [Tracked(f"bench:r{(index * n + i) % channels}") for i in range(n)]
    sem = asyncio.Semaphore(200)

    async def first(i: int, t: Tracked) -> None:
        async with sem:
            url = with_token(base, mint(TOKEN_SECRET, f"w{index}c{i}", 3600))
            await attach(t, url, SOURCES[i % len(SOURCES)], since=False)

    await asyncio.gather(*(first(i, t) for i, t in enumerate(tracked)))
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # published: restart now
    back = [
        asyncio.ensure_future(
            come_back(
                t,
                with_token(base, mint(TOKEN_SECRET, f"w{index}c{i}", 3600)),
                SOURCES[i % len(SOURCES)],
            )
        )
        for i, t in enumerate(tracked)
    ]
    pipe.send("waiting")
    await asyncio.wait_for(asyncio.gather(*back), 120)
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # all published
    # Every publication, or what came within EXPECT_WAIT_S: a loaded server delivers the last
    # ones late, and only what is still missing then counts as lost.
    deadline = time.monotonic() + EXPECT_WAIT_S
    while any(t.got < expect for t in tracked) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    pipe.send(
        {
            "live_at": [t.live_at for t in tracked],
            "recovered": sum(t.recovered for t in tracked),
            "bad": sum(t.bad for t in tracked),
            "got": [t.got for t in tracked],
        }
    )
    for t in tracked:
        if t.client is not None:
            t.client.close()


def worker_main(
    index: int, n: int, channels: int, port: int, expect: int, pipe: Connection
) -> None:
    raise_nofile()
    uvloop.run(worker(index, n, channels, port, expect, pipe))


# -- the run ------------------------------------------------------------------------------------


class NodeWorker:
    """bench/node/reconnect.js: a share of the clients in a Node.js process, spoken to by lines
    as the Python workers are by their pipe (`send`, `recv`)."""

    def __init__(self, index: int, n: int, channels: int, port: int, expect: int) -> None:
        node = shutil.which("node")
        if node is None:
            raise SystemExit("node is not installed: --client node needs Node.js 20")
        argv = [node, str(NODE_DIR / "reconnect.js"), "--url", f"ws://127.0.0.1:{port}/ws"]
        argv += ["--clients", str(n), "--index", str(index), "--channels", str(channels)]
        argv += ["--expect", str(expect)]
        argv += ["--token-secret", TOKEN_SECRET, "--sources", f"{SOURCES[0]}-{SOURCES[-1]}"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def recv(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Node client exited with {self.proc.wait()}")
        return orjson.loads(line) if line.startswith("{") else line.strip()

    def join(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run(clients: int, workers: int, channels: int, missed: int, client: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-reconnect-"))
    try:
        return _run(tmp, clients, workers, channels, missed, client)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the embedded server's data: 20 MB a run


def _run(
    tmp: Path, clients: int, workers: int, channels: int, missed: int, client: str
) -> dict[str, Any]:
    config = tmp / "config.toml"
    config.write_text(assets.SAMPLE_CONFIG.read_text() + BENCH_NAMESPACE)
    mongo = EmbeddedMongo(tmp / "data")
    url = mongo.start()
    port = free_port()
    server = start_switchboard(port, config, url, clients)
    ctx = mp.get_context("spawn")
    pipes: list[Any] = []
    procs: list[Any] = []
    share = -(-clients // workers)
    try:
        for w in range(workers):
            n = min(share, clients - w * share)
            if client == "node":
                worker_proc = NodeWorker(w, n, channels, port, BEFORE + missed)
                pipes.append(worker_proc)
                procs.append(worker_proc)
                continue
            parent, child = ctx.Pipe()
            args = (w, n, channels, port, BEFORE + missed, child)
            proc = ctx.Process(target=worker_main, args=args, daemon=True)
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        for p in pipes:
            assert p.recv() == "ready"
        for ch in range(channels):
            for i in range(BEFORE):
                publish(port, f"bench:r{ch}", {"before": i})
        time.sleep(1.0)
        killed = time.time()
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        for p in pipes:
            p.send("go")
        for p in pipes:
            assert p.recv() == "waiting"
        server = start_switchboard(port, config, url, clients)
        ready, cpu_at_ready = time.time(), procinfo.cpu_s(server.proc.pid)
        for i in range(missed):
            for ch in range(channels):
                publish(port, f"bench:r{ch}", {"after": i})
        for p in pipes:
            p.send("published")
        results = [p.recv() for p in pipes]
        cpu_at_end = procinfo.cpu_s(server.proc.pid)
        listening = listening_at(server)
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        server.proc.kill()
        server.proc.wait(30)
        mongo.stop()
    live: list[float] = sorted(t for r in results for t in r["live_at"])

    def at(q: float) -> float:
        return round(live[min(len(live) - 1, int(q * len(live)))] - killed, 3)

    return {
        "clients": len(live),
        "restart_s": round(ready - killed, 3),
        "live_after_kill_s": {"p50": at(0.5), "p99": at(0.99), "all": round(live[-1] - killed, 3)},
        "live_after_ready_s": round(live[-1] - ready, 3),
        "live_after_listening_s": (
            round(live[-1] - listening, 3) if listening is not None else None
        ),
        "live_after_ready_by_decile_s": [
            round(live[min(len(live) - 1, len(live) * d // 10)] - ready, 2) for d in range(1, 10)
        ],
        # Everything the new process did for the storm after ready, the missed publications'
        # HTTP requests included: steadier than the wall-clock figures on shared cores.
        "server_cpu_s_after_ready": (
            round(cpu_at_end - cpu_at_ready, 2)
            if cpu_at_end is not None and cpu_at_ready is not None
            else None
        ),
        "recovered": sum(r["recovered"] for r in results),
        "doubled_or_reordered": sum(r["bad"] for r in results),
        "lost": sum(max(0, BEFORE + missed - got) for r in results for got in r["got"]),
        "clients_by_publications_got": dict(
            sorted(Counter(str(got) for r in results for got in r["got"]).items())
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=19_900)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--channels", type=int, default=100)
    p.add_argument("--missed", type=int, default=5)
    p.add_argument(
        "--client",
        choices=("python", "node"),
        default="python",
        help="who the clients are: the Python workers (about 600 µs of CPU per reconnect) or "
        "bench/node/reconnect.js (raw sockets, much less)",
    )
    args = p.parse_args()
    doc = run(args.clients, args.workers, args.channels, args.missed, args.client)
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
