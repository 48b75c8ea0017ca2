"""What the soak samples besides /proc: delivery latency and each worker's event-loop lag.

Latency: a few subscribers of the soak's own take the publisher's send stamp (`data.bt`, µs
since the epoch) from each publication; each sample's p99 is exact over what they received in
its interval. Loop lag: one idle connection per worker pings it twice a second; a `ping` is
answered on the worker's event loop, so its round trip on loopback is how long the loop kept
it waiting (plus a fraction of a millisecond).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from switchboard_load.client import Client, connect

PING_EVERY_S = 0.5


class Probes:
    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies_ms: list[float] = []
        self.lag_ms: dict[str, float] = {}  # per worker: the worst ping of this interval
        self.pingers: dict[str, Client] = {}
        self.subscribers: list[Client] = []
        self._tasks: list[asyncio.Task[None]] = []

    def _on_pub(self, _client: Client, msg: dict[str, Any]) -> None:
        data = msg.get("data")
        if isinstance(data, dict) and isinstance(data.get("bt"), int):
            self.latencies_ms.append((time.time() * 1e6 - data["bt"]) / 1000)

    async def start(self, channels: list[str], subscribers: int, workers: int) -> None:
        for i in range(subscribers):
            client = await connect(self.url, self._on_pub)
            await client.send_command("subscribe", channel=channels[i % len(channels)])
            self.subscribers.append(client)
        for _ in range(20 * workers):  # the kernel picks the worker: try until each has one
            if len(self.pingers) >= workers:
                break
            client = await connect(self.url)
            node = str((await client.hello).get("node"))
            if node in self.pingers:
                client.close()
            else:
                self.pingers[node] = client
                self._tasks.append(asyncio.create_task(self._ping(node, client)))

    async def _ping(self, node: str, client: Client) -> None:
        while not client.closed.done():
            t = time.perf_counter()
            try:
                await asyncio.wait_for(client.send_command("ping"), 30)
            except (TimeoutError, ConnectionError):
                return
            rtt = (time.perf_counter() - t) * 1000
            self.lag_ms[node] = max(self.lag_ms.get(node, 0.0), rtt)
            await asyncio.sleep(PING_EVERY_S)

    def take(self) -> dict[str, Any]:
        """This interval's p99 latency and worst loop lag per worker; starts the next one."""
        lat, self.latencies_ms = sorted(self.latencies_ms), []
        lag, self.lag_ms = self.lag_ms, {}
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None
        return {
            "p99_ms": round(p99, 2) if p99 is not None else None,
            "deliveries": len(lat),
            "loop_lag_ms": {k: round(v, 2) for k, v in sorted(lag.items())},
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in [*self.subscribers, *self.pingers.values()]:
            client.close()
