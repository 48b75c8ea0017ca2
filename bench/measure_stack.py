"""Measure client CPU per received message for each candidate client stack.

Why: the load tester must not be what limits a run, so its stack was chosen by this measurement,
not by reputation. A picows sprayer sends pre-encoded `pub` frames as fast as it can to C clients
in one other process; each candidate receives them, extracts offset and send timestamp, and we
report the client's CPU seconds per 100,000 messages. Results go into bench/README.md.

    python -m bench.measure_stack --messages 300000 --clients 100
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect, ws_create_server

FRAME = (
    b'{"push":"pub","channel":"bench.0","offset":%d,"data":{"bt":1700000000000000,"pad":"xxxxxxxx"},'
    b'"info":{"user":null,"client":"abc"},"ts":1700000000000}'
)


def _serve(port: int, per_client: int, clients: int, burst: bool, ready: Any) -> None:
    """Sprayer. burst: each client gets its frames in batches of 500 (many frames per read);
    fanout: once all clients said `go`, one frame to every client per round, like a broadcast
    server, so each read carries about one frame and per-read costs show."""
    waiting: list[WSTransport] = []

    class Spray(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            loop = asyncio.get_running_loop()
            if burst:
                loop.create_task(self._burst(transport))
                return
            waiting.append(transport)
            if len(waiting) == clients:
                loop.create_task(self._rounds(list(waiting)))

        async def _burst(self, transport: WSTransport) -> None:
            for start in range(1, per_client + 1, 500):
                for off in range(start, min(start + 500, per_client + 1)):
                    transport.send(WSMsgType.TEXT, FRAME % off)
                await asyncio.sleep(0)

        async def _rounds(self, transports: list[WSTransport]) -> None:
            for off in range(1, per_client + 1):
                frame = FRAME % off
                for t in transports:
                    t.send(WSMsgType.TEXT, frame)
                await asyncio.sleep(0.001)

    async def main() -> None:
        server = await ws_create_server(lambda _req: Spray(), "127.0.0.1", port)
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


# The "parse only what you need" candidate: byte searches for three fields instead of a decode.
_PUB = b'"push":"pub"'
_CHANNEL = b'"channel":"'
_OFFSET = b'"offset":'
_BT = b'"bt":'


def _int_at(payload: bytes, key: bytes) -> int | None:
    i = payload.find(key)
    if i < 0:
        return None
    i += len(key)
    j = i
    n = len(payload)
    while j < n and payload[j] in b"0123456789-":
        j += 1
    return int(payload[i:j]) if j > i else None


def parse_pub(payload: bytes) -> tuple[str, int, int | None] | None:
    """Return (channel, offset, bench send time in µs or None) of a pub push, else None.

    >>> parse_pub(b'{"push":"pub","channel":"a","offset":7,"data":{"bt":12},"ts":1}')
    ('a', 7, 12)
    """
    if payload.find(_PUB) < 0:
        return None
    c = payload.find(_CHANNEL)
    if c < 0:
        return None
    c += len(_CHANNEL)
    channel = payload[c : payload.find(b'"', c)].decode()
    offset = _int_at(payload, _OFFSET)
    if offset is None:
        return None
    return channel, offset, _int_at(payload, _BT)


def _no_parse(payload: bytes) -> None:
    return None


def _orjson_parse(payload: bytes) -> tuple[int, int]:
    obj = orjson.loads(payload)
    return obj["offset"], obj["data"]["bt"]


async def _run_picows(
    url: str,
    clients: int,
    per_client: int,
    parse: Callable[[bytes], Any],
    aiofastnet: bool | None = None,
) -> None:
    done = asyncio.get_running_loop().create_future()
    remaining = [clients * per_client]

    class Sub(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            parse(frame.get_payload_as_bytes())
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set_result(None)

    transports = [
        (await ws_connect(Sub, url, use_aiofastnet=aiofastnet))[0] for _ in range(clients)
    ]
    for t in transports:
        t.send(WSMsgType.TEXT, b"go")
    await done
    for t in transports:
        t.disconnect()


async def _run_bench_client(url: str, clients: int, per_client: int, _parse: Any) -> None:
    """The load tester's own path: switchboard_load's Client and the worker's delivery hot path."""
    from types import SimpleNamespace

    from switchboard_load.checker import OffsetChecker
    from switchboard_load.client import Client
    from switchboard_load.worker import Worker

    done = asyncio.get_running_loop().create_future()
    sink = SimpleNamespace(delivered=0, latencies=[])
    total = clients * per_client

    def on_pub(client: Client, msg: dict[str, Any]) -> None:
        Worker.on_pub(sink, client, msg)  # type: ignore[arg-type]
        if sink.delivered == total:
            done.set_result(None)

    conns = [
        cast(Client, (await ws_connect(lambda: Client(on_pub), url))[1]) for _ in range(clients)
    ]
    for c in conns:
        assert c.transport is not None
        c.tag = OffsetChecker(0)
        c.transport.send(WSMsgType.TEXT, b"go")
    await done
    for c in conns:
        c.close()


async def _run_websockets(
    url: str, clients: int, per_client: int, parse: Callable[[bytes], Any]
) -> None:
    from websockets.asyncio.client import connect

    async def one(ws: Any) -> None:
        for _ in range(per_client):
            parse(await ws.recv(decode=False))

    conns = [await connect(url, max_queue=None, close_timeout=0.1) for _ in range(clients)]
    for ws in conns:
        await ws.send("go")
    await asyncio.gather(*(one(ws) for ws in conns))
    for ws in conns:
        await ws.close()


CANDIDATES: dict[str, tuple[Callable[..., Any], Callable[[bytes], Any], bool]] = {
    "websockets+orjson": (_run_websockets, _orjson_parse, False),
    "websockets+orjson+uvloop": (_run_websockets, _orjson_parse, True),
    "picows+orjson": (_run_picows, _orjson_parse, False),
    "picows+orjson+uvloop": (_run_picows, _orjson_parse, True),
    "picows+fastparse+uvloop": (_run_picows, parse_pub, True),
    "picows+uvloop, no parsing": (_run_picows, _no_parse, True),
    "switchboard_load client + worker hot path (uvloop)": (_run_bench_client, _no_parse, True),
    "picows+orjson+uvloop, no aiofastnet": (
        partial(_run_picows, aiofastnet=False),
        _orjson_parse,
        True,
    ),
}


def measure(name: str, clients: int, messages: int, port: int, burst: bool) -> dict[str, float]:
    """Run one candidate against a fresh sprayer; return CPU s per 100k messages and msgs/s."""
    per_client = messages // clients
    ready = mp.Event()
    server = mp.Process(target=_serve, args=(port, per_client, clients, burst, ready), daemon=True)
    server.start()
    ready.wait(10)
    runner, parse, use_uvloop = CANDIDATES[name]
    url = f"ws://127.0.0.1:{port}/ws"
    try:
        if use_uvloop:
            import uvloop

            uvloop.install()
        else:
            asyncio.set_event_loop_policy(None)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        asyncio.run(runner(url, clients, per_client, parse))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        server.kill()
        server.join()
    total = per_client * clients
    return {"cpu_s_per_100k": cpu / total * 100_000, "msgs_per_s": total / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--pattern", choices=("fanout", "burst"), default="fanout")
    args = ap.parse_args()
    print(f"pattern {args.pattern}, {args.clients} clients, {args.messages} messages")
    print(f"{'candidate':38} {'CPU s / 100k msgs':>18} {'msgs/s':>10}")
    for i, name in enumerate(CANDIDATES):
        r = measure(name, args.clients, args.messages, args.port + i, args.pattern == "burst")
        print(f"{name:38} {r['cpu_s_per_100k']:18.3f} {r['msgs_per_s']:10.0f}", flush=True)


if __name__ == "__main__":
    main()
