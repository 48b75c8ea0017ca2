"""The worker's connections: opened at the connect rate, subscribed, each with its delivery check,
and reconnected in place when the server drains them.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from switchboard_load.checker import OffsetChecker
from switchboard_load.client import Client, connect, error_cause
from switchboard_load.holder import reconnect, reconnect_delay_s, since_of, subscribe_retrying
from switchboard_load.publisher import HttpPublishers, Publishers
from switchboard_load.worker_state import WorkerState

_now = time.time

#: Connects in progress at once per worker: enough to reach the connect rate, few enough for
#: SYN queues.
MAX_PENDING_CONNECTS = 256


class Connections(WorkerState):
    """Opens, checks and replaces the worker's connections."""

    # -- deliveries --------------------------------------------------------------------------

    def on_pub(self, client: Client, msg: dict[str, Any]) -> None:
        """Hot path: count, take latency from the publisher's stamp, feed the offset checker.

        The in-order case of OffsetChecker.see is inlined: it is nearly every delivery, and a
        method call is a measurable share of the tester's CPU per frame (bench/README.md).
        """
        self.delivered += 1
        data = msg.get("data")
        if data.__class__ is dict and "bt" in data:
            self.latencies.append(_now() * 1e6 - data["bt"])
        tag = client.tag
        offset = msg["offset"]
        if tag.__class__ is OffsetChecker:
            if offset == tag.next:
                tag.next = offset + 1
                tag.received += 1
            else:
                tag.see(offset)
        elif tag.__class__ is list:
            tag.append(offset)  # arrived before the subscribe reply

    async def open_client(
        self,
        name: str,
        channel: str | None,
        since: dict[str, Any] | None = None,
        checker: OffsetChecker | None = None,
    ) -> Client:
        """Connect, and subscribe when `channel` is given; the client's tag is its checker.

        After a drain, `since` and `checker` resume the subscription where it stopped.
        """
        t0 = time.perf_counter()
        client = await connect(
            self.premade.pop(name, "") or self.urls(name),
            self.on_pub,
            self.source(),
            self.p.connect_timeout,
            self.p.encoding,
        )
        client.name = name
        self.connect_hist.add_many([(time.perf_counter() - t0) * 1e6])
        if channel is not None:
            try:
                await self.subscribe(client, channel, since, checker)
            except BaseException:
                client.close()
                raise
            client.on_unsubscribed = self.unsubscribed
        return client

    async def subscribe(
        self,
        client: Client,
        channel: str,
        since: dict[str, Any] | None,
        checker: OffsetChecker | None,
    ) -> None:
        """Subscribe (from `since`, continuing `checker`); the client's tag becomes the check."""
        client.tag = []
        res = await subscribe_retrying(client, channel, since, self.p.connect_timeout)
        early = client.tag
        chk = checker
        if chk is None or since is None or res["epoch"] != since["epoch"]:
            if chk is not None:  # a new epoch: offsets start again, so does the check
                self.totals.add(channel, chk, None)
            chk = OffsetChecker(int(res["offset"]))
        for pub in res.get("missed") or ():
            chk.see(int(pub["offset"]))
        for off in early:
            chk.see(off)
        client.epoch = str(res["epoch"])
        client.tag = chk

    def unsubscribed(self, client: Client, channel: str, reason: str) -> None:
        """The server ended a holder's subscription: with `insufficient_state` it asks the
        client to resubscribe from where it is, as the browser client does (docs/protocol.md);
        `server` means an admin ended it, and it stays ended."""
        if reason != "insufficient_state" or self.closing:
            return
        task = asyncio.ensure_future(self.resubscribe(client, channel))
        self.reconnecting.add(task)
        task.add_done_callback(self.reconnecting.discard)

    async def resubscribe(self, client: Client, channel: str) -> None:
        checker = client.tag if isinstance(client.tag, OffsetChecker) else None
        try:
            await self.subscribe(client, channel, since_of(client), checker)
        except Exception as exc:
            self.errors[f"resubscribe:{error_cause(exc)}"] += 1
            client.tag = checker  # what followed counts as lost

    def watch(self, client: Client, kind: str) -> None:
        """Count a connection the server closes on us, by close code; a holder the server
        drains (`disconnect` with `reconnect: true`) reconnects as the browser client would."""

        def closed(fut: asyncio.Future[int | None]) -> None:
            if self.closing or (kind == "churn" and client not in self.churners):
                return  # we closed it ourselves
            delay = reconnect_delay_s(client.disconnect_push) if kind == "hold" else None
            if delay is None:
                self.errors[f"{kind}-closed:{fut.result()}"] += 1
                return
            self.errors[f"hold-drained:{fut.result()}"] += 1
            task = asyncio.ensure_future(self.replace(client, delay))
            self.reconnecting.add(task)
            task.add_done_callback(self.reconnecting.discard)

        client.closed.add_done_callback(closed)

    async def replace(self, old: Client, delay: float) -> None:
        """Reconnect a drained holder in its place, resubscribing from where its check is."""
        channel = self.holder_channels.get(old) or None
        chk = old.tag if isinstance(old.tag, OffsetChecker) else None
        again = partial(self.open_client, old.name, channel, since_of(old), chk)
        new = await reconnect(again, delay, lambda: self.closing, self.errors)
        if new is None:
            return
        if self.closing:
            new.close()
            return
        self.reconnected += 1
        self.last_reconnect_at = time.time()
        new.frames += old.frames
        slot = self.slots.pop(old)
        self.holders[slot] = new
        self.slots[new] = slot
        self.holder_channels[new] = self.holder_channels.pop(old)
        self.watch(new, "hold")

    # -- connecting --------------------------------------------------------------------------

    async def connect_all(self) -> None:
        """Open this worker's holders at its connect rate, reporting progress each second."""
        plan, sem = self.plan, asyncio.Semaphore(MAX_PENDING_CONNECTS)
        subscribe = self.p.scenario in ("fanout", "churn") or self.p.subscribe
        for n in range(plan.holder_start, plan.holder_start + plan.holder_count):
            self.premade[f"bench-{n}"] = self.urls(f"bench-{n}")
        t0 = time.monotonic()
        last_tick = t0

        async def one(n: int) -> None:
            try:
                ch = self.channel_of(n) if subscribe else None
                client = await self.open_client(f"bench-{n}", ch)
                self.slots[client] = len(self.holders)
                self.holders.append(client)
                self.holder_channels[client] = ch or ""
                self.watch(client, "hold")
            except Exception as exc:
                self.errors[f"connect:{error_cause(exc)}"] += 1
            finally:
                sem.release()

        tasks = []
        for i in range(plan.holder_count):
            due = t0 + i / plan.connect_rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            await sem.acquire()
            tasks.append(asyncio.create_task(one(plan.holder_start + i)))
            if now - last_tick >= 1.0:
                last_tick = now
                self.send("connecting", plan.index, len(self.holders), sum(self.errors.values()))
        await asyncio.gather(*tasks)
        self.connect_s = time.monotonic() - t0

    async def connect_publishers(self) -> Publishers | None:
        plan = self.plan
        if self.p.scenario not in ("fanout", "churn") or plan.pub_rate <= 0:
            return None
        pad = "x" * self.p.payload_bytes
        if self.p.api_url:
            return HttpPublishers(self.p.api_url, self.p.api_key, pad)
        clients = []
        for i in range(plan.publishers):
            try:
                clients.append(await self.open_client(f"bench-pub-{plan.index}-{i}", None))
            except Exception as exc:
                self.errors[f"publisher-connect:{error_cause(exc)}"] += 1
        return Publishers(clients, pad) if clients else None
