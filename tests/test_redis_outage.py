"""Redis stopped and restarted under two running server processes.

The servers stay up and say why they are not ready; publishes are refused while Redis is away;
afterwards a subscriber recovers, through `since`, every acknowledged publication exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import tornado.httpclient

from tests.fixtures.server_processes import ServerProcess
from tests.redis_server import RedisProcess
from tests.support import WsClient, ws_open


async def readiness(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    resp = await tornado.httpclient.AsyncHTTPClient().fetch(
        server.base_url + "/readyz", raise_error=False
    )
    return resp.code, orjson.loads(resp.body)


async def until_ready(servers: list[ServerProcess], code: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    for server in servers:
        while (await readiness(server))[0] != code:
            assert time.monotonic() < deadline, f"/readyz never answered {code}"
            await asyncio.sleep(0.05)


class Publisher:
    """Publishes 0, 1, 2... one at a time; remembers what was acknowledged and what refused."""

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.acked: list[int] = []
        self.refused = 0
        self.running = True

    async def run(self) -> None:
        n = 0
        while self.running:
            reply = await self.client.call("publish", channel="news", data=n)
            if "error" in reply:
                assert reply["error"]["code"] == "unavailable", reply
                self.refused += 1
                await asyncio.sleep(0.05)
            else:
                self.acked.append(n)
            n += 1
            await asyncio.sleep(0.005)


class Subscriber:
    """Stays subscribed: on `unsubscribed` it resubscribes from the last offset it saw."""

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.got: list[int] = []
        self.resubscribed = 0
        self.position: dict[str, Any] = {}

    async def subscribe(self, since: dict[str, Any] | None = None) -> None:
        args = {"since": since} if since else {}
        result = await self.client.ok("subscribe", channel="news", **args)
        if since:
            assert result["recovered"], result
        self.got += [p["data"] for p in result["missed"]]
        self.position = {"offset": result["offset"], "epoch": result["epoch"]}

    async def run(self) -> None:
        while True:
            push = await self.client.push(timeout=30)
            if push.get("push") == "pub":
                self.got.append(push["data"])
                self.position["offset"] = push["offset"]
            elif push.get("push") == "unsubscribed":
                assert push["reason"] == "insufficient_state"
                self.resubscribed += 1
                await self.subscribe(since=dict(self.position))


@pytest.mark.asyncio
async def test_servers_ride_out_a_redis_restart_and_lose_nothing_acknowledged(
    server_processes: Callable[..., ServerProcess], own_redis: RedisProcess, redis_prefix: str
) -> None:
    a, b = (server_processes(own_redis.url, redis_prefix) for _ in range(2))
    a.wait_ready()
    b.wait_ready()
    sub_client, pub_client = await ws_open(a.ws_url), await ws_open(a.ws_url)
    watcher = await ws_open(b.ws_url)
    sub, pub = Subscriber(sub_client), Publisher(pub_client)
    await sub.subscribe()
    tasks = [asyncio.ensure_future(pub.run()), asyncio.ensure_future(sub.run())]
    try:
        await asyncio.sleep(0.3)
        own_redis.stop()
        await until_ready([a, b], 503)
        code, body = await readiness(b)
        assert "redis" in body["problems"]["broker"], body
        await asyncio.sleep(0.5)
        own_redis.start()
        await until_ready([a, b], 200)
        await asyncio.sleep(0.5)
        pub.running = False
        await asyncio.sleep(0.5)
    finally:
        for task in tasks:
            task.cancel()
    assert pub.refused > 0 and len(pub.acked) > 20
    assert sub.resubscribed == 0, "the server should have recovered the subscription itself"
    missing = set(pub.acked) - set(sub.got)
    assert not missing, f"acknowledged but never delivered: {sorted(missing)}"
    assert len(sub.got) == len(set(sub.got)), "a publication arrived twice"
    assert sub.got == sorted(sub.got)
    assert (await watcher.ok("ping")) == {}  # B's clients stayed connected throughout
    for client in (sub_client, pub_client, watcher):
        await client.close()
    assert a.proc.poll() is None and b.proc.poll() is None
