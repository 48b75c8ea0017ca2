"""The load a worker generates: publications at its rate, `ping` round trips, and connections
that open, subscribe, live a while and close.
"""

from __future__ import annotations

import asyncio
import time

from switchboard_load.checker import OffsetChecker
from switchboard_load.client import Client, error_cause
from switchboard_load.publisher import Publishers
from switchboard_load.worker_connections import Connections


class Traffic(Connections):
    """Publishes, pings and churns until the load's end (`stop_at`)."""

    # -- load generators ---------------------------------------------------------------------

    async def pace(self, pubs: Publishers, stop_at: float) -> None:
        """Publish at this worker's rate, round-robin over channels, in 5 ms steps."""
        rate, k = self.plan.pub_rate, max(1, self.p.channels)
        t0, sent, n = time.monotonic(), 0, self.plan.index
        while (now := time.monotonic()) < stop_at:
            due = int((now - t0) * rate) - sent
            for _ in range(due):
                pubs.publish(f"{self.p.channel_prefix}{n % k}")
                n += 1
            sent += max(0, due)
            await asyncio.sleep(0.005)

    async def echo(self, client: Client, stop_at: float) -> None:
        """`ping` round trips, closed-loop or at --ping-rate per client; latency is the round trip.

        A paced client stays under a server's per-connection command rate limit (Switchboard's
        default is 100/s), which a closed loop on loopback would pass and be closed with 4008.
        """
        interval = 1.0 / self.p.ping_rate if self.p.ping_rate > 0 else 0.0
        next_at = time.monotonic()
        while time.monotonic() < stop_at and not client.closed.done():
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - interval - time.monotonic()))
            t0 = time.perf_counter()
            try:
                await client.send_command("ping")
            except Exception as exc:
                self.errors[f"ping:{error_cause(exc)}"] += 1
                return
            self.latencies.append((time.perf_counter() - t0) * 1e6)
            self.pings += 1
            self.delivered += 1

    async def churn(self, stop_at: float) -> None:
        """Open connections at the churn rate; each subscribes, lives churn_life s, then closes."""
        t0, n, tasks = time.monotonic(), 0, set()
        while (now := time.monotonic()) < stop_at:
            due = t0 + n / self.plan.churn_rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            task = asyncio.create_task(self.churn_one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)

    async def churn_one(self, n: int) -> None:
        name = f"bench-churn-{self.plan.index}-{n}"
        ch = self.channel_of(n)
        self.churn_opened += 1
        try:
            client = await self.open_client(name, ch)
        except Exception as exc:
            self.errors[f"churn-connect:{error_cause(exc)}"] += 1
            return
        self.churners.add(client)
        self.watch(client, "churn")
        await asyncio.sleep(self.p.churn_life)
        self.churners.discard(client)
        client.close()
        self.churn_frames += client.frames
        if isinstance(client.tag, OffsetChecker):
            self.totals.add(ch, client.tag, None)
