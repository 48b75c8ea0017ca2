"""Durable publishing and recovery with the MongoDB store: how fast, and what group commit buys.

Four measurements, each against a fresh embedded MongoDB-compatible server:
- ceiling: publications/s the embedded server inserts with `insert_many` into a collection
  with the publications collection's indexes (server/store/schema.py), in runs of 1, 10 and 50
  publications a document (a group commit writes one run per channel, mongo_docs.py);
- node: acknowledged publishes/s through Node.publish in this process (no sockets), with the
  embedded server in a child process (as `python -m server` runs it) or in this process, to show
  what its threads cost the IOLoop;
- server: acknowledged publishes/s into a history namespace of one real `python -m server`
  process, from WebSocket clients in this process (their publishes pipelined: the server runs a
  connection's publishes at once), with and without group commit;
- recovery: 1,000 clients reconnect to that server and subscribe with `since`: time until every
  one has its missed publications.

    python -m bench.store_throughput [--seconds 5] [--clients 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import tornado.httpclient
import tornado.testing
import tornado.websocket

from server import config as config_mod
from server.app import build_node
from server.store.embedded import EmbeddedMongo

ROOT = Path(__file__).resolve().parent.parent
HISTORY = {"history_size": 1000, "history_ttl_s": 3600, "presence": False, "join_leave": False}


def free_port() -> int:
    sock, port = tornado.testing.bind_unused_port()
    sock.close()
    return port


async def drive(publish: Callable[[int, int], Any], workers: int, seconds: float) -> float:
    """Run `workers` loops of acknowledged publishes for `seconds`; publishes per second."""
    done = 0
    deadline = time.monotonic() + seconds

    async def loop(w: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < deadline:
            await publish(w, i)
            done += 1
            i += 1

    start = time.monotonic()
    await asyncio.gather(*(loop(w) for w in range(workers)))
    return done / (time.monotonic() - start)


# -- node: the store path alone, in this process ------------------------------------------------


async def node_rate(url: str, group_commit_ms: float, seconds: float) -> tuple[float, float]:
    """Publishes/s through Node.publish and the IOLoop's worst lag (ms) meanwhile."""
    cfg = config_mod.from_dict(
        {
            "mongo": {
                "url": url,
                "group_commit_ms": group_commit_ms,
                "database": f"bench{time.time_ns()}",
            },
            "namespaces": {"h": HISTORY},
        },
        env={},
        dev=True,
    )
    node = build_node(cfg)
    await node.start()
    lag = 0.0
    running = True

    async def watch() -> None:
        nonlocal lag
        while running:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lag = max(lag, (time.monotonic() - t - 0.01) * 1000)

    watcher = asyncio.ensure_future(watch())
    rate = await drive(lambda w, i: node.publish(f"h:c{w % 20}", {"i": i}, None), 200, seconds)
    running = False
    await watcher
    await node.close()
    return rate, lag


async def insert_ceiling(url: str, per_run: int, batch: int = 1000, rounds: int = 3) -> float:
    """Publications/s of unordered insert_many batches of runs of `per_run` publications (one
    run per channel per group commit, server/store/mongo_docs.py) under the publications
    indexes."""
    from pymongo import AsyncMongoClient

    from server.store import mongo_docs, schema
    from server.store.mongo_io import when

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        coll = client[f"ceiling{time.time_ns()}"][schema.PUBLICATIONS]
        await coll.create_indexes(schema.INDEXES[schema.PUBLICATIONS])
        expire_at = when(time.time() + 3600)
        body = b'{"channel":"h:c","data":{"i":1},"ts":1}'
        start = time.perf_counter()
        for r in range(rounds):
            docs = [
                doc
                for first in range(r * batch, (r + 1) * batch, per_run)
                for doc in mongo_docs.runs(
                    f"h:c{first // per_run % 20}",
                    "e",
                    [(o, body) for o in range(first, first + per_run)],
                    1000,
                    expire_at,
                )
            ]
            await coll.insert_many(docs, ordered=False)
        return rounds * batch / (time.perf_counter() - start)
    finally:
        await client.close()


def bench_node(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        child = EmbeddedMongo(Path(tmp) / "child")
        url = child.start()
        try:
            for per_run in (1, 10, 50):
                ceiling = asyncio.run(insert_ceiling(url, per_run))
                print(
                    f"ceiling: the embedded server stores {ceiling:,.0f} publications/s in runs "
                    f"of {per_run} under the publications indexes (insert_many, unordered)"
                )
            for gc_ms in (0.0, 2.0):
                rate, lag = asyncio.run(node_rate(url, gc_ms, seconds))
                print(
                    f"node, embedded in a child process, group_commit_ms={gc_ms:g}: "
                    f"{rate:,.0f} publishes/s, worst IOLoop lag {lag:.0f} ms"
                )
        finally:
            child.stop()
        from secantus import SecantusDBServer

        inproc = SecantusDBServer(port=0, storage_path=str(Path(tmp) / "inproc"))
        inproc.start()
        try:
            rate, lag = asyncio.run(node_rate(inproc.uri, 2.0, seconds))
            print(
                f"node, embedded in this process, group_commit_ms=2: "
                f"{rate:,.0f} publishes/s, worst IOLoop lag {lag:.0f} ms"
            )
        finally:
            inproc.stop()


# -- a real server process ----------------------------------------------------------------------


class Server:
    """`python -m server` on the embedded default, with a data directory of its own."""

    def __init__(self, tmp: Path, group_commit_ms: float) -> None:
        self.port = free_port()
        cfg = tmp / f"config{group_commit_ms:g}.toml"
        cfg.write_text(
            f'[mongo]\nurl = ""\ndata_dir = "{tmp / f"data{group_commit_ms:g}"}"\n'
            f"group_commit_ms = {group_commit_ms}\n\n"
            "[limits]\ncommand_rate = 1000000\ncommand_burst = 1000000\n"
            "publish_bytes_per_s = 1000000000\npublish_bytes_burst = 1000000000\n"
            "connects_per_ip_per_s = 1000000\nconnects_per_ip_burst = 1000000\n\n"
            "[namespaces.h]\n"
            + "".join(f"{k} = {orjson.dumps(v).decode()}\n" for k, v in HISTORY.items())
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "--dev",
                "--port",
                str(self.port),
                "--config",
                str(cfg),
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
        )
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"

    async def ready(self) -> None:
        client = tornado.httpclient.AsyncHTTPClient()
        for _ in range(300):
            try:
                if (
                    await client.fetch(f"http://127.0.0.1:{self.port}/readyz", raise_error=False)
                ).code == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)


class Conn:
    """A minimal protocol client: pipelined commands, replies matched by id."""

    def __init__(self, ws: tornado.websocket.WebSocketClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str) -> Conn:
        ws = await tornado.websocket.websocket_connect(url)
        await ws.read_message()  # hello
        return cls(ws)

    async def _read(self) -> None:
        while (msg := await self.ws.read_message()) is not None:
            obj = orjson.loads(msg)
            fut = self.waiting.pop(obj.get("id", -1), None)
            if fut is not None:
                fut.set_result(obj)

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        self.next_id += 1
        fut = self.waiting[self.next_id] = asyncio.get_running_loop().create_future()
        self.ws.write_message(orjson.dumps({"id": self.next_id, "op": op, **fields}))
        reply = await fut
        if "error" in reply:
            raise RuntimeError(reply["error"])
        result: dict[str, Any] = reply["result"]
        return result

    async def close(self) -> None:
        self.ws.close()
        await self.reader


async def server_rate(
    server: Server, seconds: float, connections: int = 20, in_flight: int = 200
) -> float:
    conns = [await Conn.open(server.ws_url) for _ in range(connections)]
    rate = await drive(
        lambda w, i: conns[w % connections].call("publish", channel=f"h:p{w % 20}", data={"i": i}),
        in_flight,
        seconds,
    )
    for c in conns:
        await c.close()
    return rate


async def recovery(server: Server, clients: int, missed: int) -> tuple[float, int]:
    """Seconds for `clients` to reconnect and recover `missed` publications each, and how
    many came back complete."""
    channels = 100
    first = []
    for n in range(clients):
        conn = await Conn.open(server.ws_url)
        pos = await conn.call("subscribe", channel=f"h:r{n % channels}")
        first.append((conn, pos))
    for c, _ in first:
        await c.close()
    publisher = await Conn.open(server.ws_url)
    await asyncio.gather(
        *(
            publisher.call("publish", channel=f"h:r{ch}", data={"m": i})
            for ch in range(channels)
            for i in range(missed)
        )
    )
    await publisher.close()
    limit = asyncio.Semaphore(200)

    async def come_back(n: int, pos: dict[str, Any]) -> tuple[Conn, bool]:
        async with limit:
            conn = await Conn.open(server.ws_url)
            r = await conn.call("subscribe", channel=f"h:r{n % channels}", since=pos)
            return conn, r["recovered"] and len(r["missed"]) == missed

    start = time.monotonic()
    back = await asyncio.gather(*(come_back(n, pos) for n, (_, pos) in enumerate(first)))
    elapsed = time.monotonic() - start
    for conn, _ in back:
        await conn.close()
    return elapsed, sum(ok for _, ok in back)


def bench_server(seconds: float, clients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for gc_ms in (0.0, 2.0):
            server = Server(Path(tmp), gc_ms)
            try:
                asyncio.run(server.ready())
                for conns, in_flight in ((20, 200), (1, 1000)):
                    rate = asyncio.run(server_rate(server, seconds, conns, in_flight))
                    print(
                        f"server process, group_commit_ms={gc_ms:g}: {rate:,.0f} acknowledged "
                        f"publishes/s ({conns} connection(s), {in_flight} in flight, 20 channels)"
                    )
                if gc_ms:
                    elapsed, ok = asyncio.run(recovery(server, clients, 20))
                    print(
                        f"recovery: {clients} clients reconnected and recovered 20 missed "
                        f"publications each in {elapsed:.2f} s ({ok} complete)"
                    )
            finally:
                server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=1000)
    args = p.parse_args()
    bench_node(args.seconds)
    bench_server(args.seconds, args.clients)


if __name__ == "__main__":
    main()
