"""Publish-to-deliver latency and deliveries/s: two processes with Redis against one in memory.

Why: Redis adds a hop (publisher's process -> Redis -> subscriber's process) that one process
with the in-memory broker does not have; this measures what the hop costs on this machine.
Subscribers connect to process A, the publisher to process B (both to the one process in the
memory case). Each publication carries its send time (`bt`, µs) and every subscriber notes
when it arrived; the client runs in this process, so both times come from one clock.

- latency: `--rate` publications/s for `--seconds`, to `--subscribers` subscribers: p50/p99.
- throughput: `--messages` publications sent as fast as a window of 25 unacknowledged per connection
  allows (spread over `--publishers` connections), to the same subscribers: deliveries/s from the
  first send to the last delivery.

    python -m bench.redis_latency [--subscribers 20] [--rate 1000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.measure_stack import parse_pub
from tests.fixtures.server_processes import ServerProcess
from tests.redis_server import started_redis

CHANNEL = "bench"
WINDOW = 25  # unacknowledged publications per publisher connection


def now_us() -> int:
    return time.perf_counter_ns() // 1000


class Subscriber(WSListener):
    """Counts pub pushes and records each one's latency while `record` is on."""

    def __init__(self, state: Shared) -> None:
        self.state = state
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        payload = frame.get_payload_as_bytes()
        pub = parse_pub(payload)
        if pub is None:
            if b'"ok":true' in payload and not self.subscribed.done():
                self.subscribed.set_result(None)
            return
        self.state.delivered(pub[2])


class Shared:
    """What all subscribers of one run add up to."""

    def __init__(self) -> None:
        self.latencies_us: list[int] = []
        self.count = 0
        self.expected = 0
        self.all_in: asyncio.Event = asyncio.Event()

    def delivered(self, sent_us: int | None) -> None:
        if sent_us is not None:
            self.latencies_us.append(now_us() - sent_us)
        self.count += 1
        if self.count == self.expected:
            self.all_in.set()


class Publisher(WSListener):
    """Publishes on one connection, with at most `window` publications unacknowledged."""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.next_id = 0
        self.acked = 0
        self.room = asyncio.Semaphore(WINDOW)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        payload = frame.get_payload_as_bytes()
        if payload.startswith(b'{"id"'):
            assert b'"ok":true' in payload, payload
            self.acked += 1
            self.room.release()

    async def publish(self) -> None:
        await self.room.acquire()
        self.next_id += 1
        assert self.transport is not None
        self.transport.send(
            WSMsgType.TEXT,
            orjson.dumps(
                {"id": self.next_id, "op": "publish", "channel": CHANNEL, "data": {"bt": now_us()}}
            ),
        )


async def measure(
    sub_url: str,
    pub_url: str,
    subscribers: int,
    publishers: int,
    rate: int,
    seconds: float,
    messages: int,
) -> dict[str, float]:
    state = Shared()
    subs: list[tuple[WSTransport, Subscriber]] = []
    for _ in range(subscribers):
        transport, listener = await ws_connect(lambda: Subscriber(state), sub_url)
        assert isinstance(listener, Subscriber)
        transport.send(
            WSMsgType.TEXT, orjson.dumps({"id": 1, "op": "subscribe", "channel": CHANNEL})
        )
        subs.append((transport, listener))
    await asyncio.gather(*(listener.subscribed for _, listener in subs))
    pubs: list[tuple[WSTransport, Publisher]] = []
    for _ in range(publishers):
        pub_transport, pub_listener = await ws_connect(Publisher, pub_url)
        assert isinstance(pub_listener, Publisher)
        pubs.append((pub_transport, pub_listener))

    count = int(rate * seconds)
    state.expected = count * subscribers
    start = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        await pubs[i % publishers][1].publish()
    await asyncio.wait_for(state.all_in.wait(), 30)
    lat = sorted(state.latencies_us)
    figures = {
        "p50_ms": lat[len(lat) // 2] / 1000,
        "p99_ms": lat[int(len(lat) * 0.99)] / 1000,
        "mean_ms": statistics.fmean(lat) / 1000,
    }

    state.count, state.expected = 0, messages * subscribers
    state.all_in.clear()
    start = time.perf_counter()
    for i in range(messages):
        await pubs[i % publishers][1].publish()
    await asyncio.wait_for(state.all_in.wait(), 120)
    figures["deliveries_per_s"] = messages * subscribers / (time.perf_counter() - start)
    figures["publications_per_s"] = messages / (time.perf_counter() - start)
    for transport, _ in [*subs, *pubs]:
        transport.disconnect()
    return figures


@contextmanager
def servers(workdir: Path, redis: bool) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two processes sharing a fresh Redis, or one in-memory process (returned twice)."""
    if not redis:
        one = ServerProcess(workdir, "", "bench")
        try:
            one.wait_ready()
            yield one, one
        finally:
            one.stop()
        return
    redis_server = started_redis(workdir)
    prefix = f"bench-{secrets.token_hex(3)}"
    a = ServerProcess(workdir / "a", redis_server.url, prefix)
    b = ServerProcess(workdir / "b", redis_server.url, prefix)
    try:
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()
        redis_server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=20)
    p.add_argument(
        "--publishers",
        type=int,
        default=8,
        help="publishing connections (a connection's commands run one at a time)",
    )
    p.add_argument("--rate", type=int, default=1000, help="publications/s, latency phase")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--messages", type=int, default=5000, help="throughput phase")
    args = p.parse_args()
    print(
        f"{args.subscribers} subscribers, {args.publishers} publishers; "
        f"latency at {args.rate} pub/s for {args.seconds} s; "
        f"throughput over {args.messages} publications"
    )
    print(f"{'setup':<28}{'p50 ms':>8}{'p99 ms':>8}{'mean ms':>9}{'deliv/s':>10}{'pub/s':>8}")
    for label, redis in (("1 process, memory broker", False), ("2 processes + Redis", True)):
        with tempfile.TemporaryDirectory() as tmp:
            for sub in ("a", "b"):
                (Path(tmp) / sub).mkdir()
            with servers(Path(tmp), redis) as (a, b):
                f = asyncio.run(
                    measure(
                        a.ws_url,
                        b.ws_url,
                        args.subscribers,
                        args.publishers,
                        args.rate,
                        args.seconds,
                        args.messages,
                    )
                )
        print(
            f"{label:<28}{f['p50_ms']:>8.2f}{f['p99_ms']:>8.2f}{f['mean_ms']:>9.2f}"
            f"{f['deliveries_per_s']:>10,.0f}{f['publications_per_s']:>8,.0f}"
        )


if __name__ == "__main__":
    main()
