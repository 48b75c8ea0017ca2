"""Several real server processes sharing one Redis: fan-out, presence, join/leave, expiry."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
import tornado.httpclient

from tests.fixtures.server_processes import ROOT, ServerProcess
from tests.redis_server import TEST_TTL_S
from tests.support import API_KEY, WsClient, ws_open

Pair = tuple[ServerProcess, ServerProcess]


def start_pair(
    server_processes: Callable[..., ServerProcess],
    redis_url: str,
    redis_prefix: str,
    env: dict[str, str] | None = None,
) -> Pair:
    a, b = (server_processes(redis_url, redis_prefix, env=env) for _ in range(2))
    a.wait_ready()
    b.wait_ready()
    return a, b


@pytest.fixture
def pair(server_processes: Callable[..., ServerProcess], redis_url: str, redis_prefix: str) -> Pair:
    return start_pair(server_processes, redis_url, redis_prefix)


@pytest_asyncio.fixture
async def clients() -> AsyncIterator[Callable[[str], Awaitable[WsClient]]]:
    opened: list[WsClient] = []

    async def connect(url: str) -> WsClient:
        opened.append(await ws_open(url))
        return opened[-1]

    yield connect
    for client in opened:
        await client.close()


async def get_json(url: str) -> tuple[int, dict[str, Any]]:
    resp = await tornado.httpclient.AsyncHTTPClient().fetch(
        url, headers={"Authorization": f"apikey {API_KEY}"}, raise_error=False
    )
    return resp.code, orjson.loads(resp.body)


async def fan_out_in_order(sub: WsClient, pub: WsClient, count: int) -> None:
    """`count` publishes pipelined by `pub` take consecutive offsets and reach `sub` (on the
    other process) once each, in order."""
    start = await sub.ok("subscribe", channel="news")
    replies = await asyncio.gather(
        *(pub.call("publish", channel="news", data=i) for i in range(count))
    )
    offsets = [r["result"]["offset"] for r in replies]
    assert offsets == list(range(start["offset"] + 1, start["offset"] + count + 1))
    got = [await sub.push_of("pub") for _ in range(count)]
    assert [p["data"] for p in got] == list(range(count))
    assert [p["offset"] for p in got] == offsets


@pytest.mark.asyncio
async def test_a_subscriber_on_a_gets_every_publication_made_on_b_in_order(
    pair: Pair, clients: Callable[[str], Awaitable[WsClient]]
) -> None:
    a, b = pair
    sub, pub = await clients(a.ws_url), await clients(b.ws_url)
    assert sub.hello["node"] != pub.hello["node"]
    await fan_out_in_order(sub, pub, 1000)


@pytest.mark.asyncio
async def test_two_processes_on_uvloop_fan_out_in_order_and_exit_cleanly(
    server_processes: Callable[..., ServerProcess],
    redis_url: str,
    redis_prefix: str,
    clients: Callable[[str], Awaitable[WsClient]],
) -> None:
    """`[server] event_loop = "uvloop"`: the listener's own upgrades (a peek at the head, the
    socket detached from Tornado), pipelined publishes, Redis fan-out and the drain on SIGTERM
    all run on libuv's loop as on asyncio's."""
    env = {"SWITCHBOARD_SERVER_EVENT_LOOP": "uvloop"}
    a, b = start_pair(server_processes, redis_url, redis_prefix, env)
    await fan_out_in_order(await clients(a.ws_url), await clients(b.ws_url), 300)
    for server in (a, b):  # libuv's loop is loaded only when the setting asks for it
        maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
        assert "uvloop/loop." in maps
    assert a.stop() == 0 and b.stop() == 0
    assert "Traceback" not in a.log() + b.log(), a.log() + b.log()


@pytest.mark.asyncio
async def test_presence_join_and_leave_cross_processes(
    pair: Pair, clients: Callable[[str], Awaitable[WsClient]]
) -> None:
    a, b = pair
    on_a, on_b = await clients(a.ws_url), await clients(b.ws_url)
    await on_a.ok("subscribe", channel="room")
    await on_b.ok("subscribe", channel="room")
    join = await on_a.push_of("join")
    assert (join["channel"], join["client"]) == ("room", on_b.hello["client"])
    present = await on_a.ok("presence", channel="room")
    assert set(present["clients"]) == {on_a.hello["client"], on_b.hello["client"]}
    await on_b.ok("unsubscribe", channel="room")
    leave = await on_a.push_of("leave")
    assert leave["client"] == on_b.hello["client"]
    assert set((await on_a.ok("presence", channel="room"))["clients"]) == {on_a.hello["client"]}


@pytest.mark.asyncio
async def test_stats_list_every_live_process(pair: Pair) -> None:
    a, b = pair
    status, body = await get_json(a.base_url + "/api/stats")
    assert status == 200, body
    assert body["total"]["processes"] == 2
    assert len({p["pid"] for p in body["processes"]}) == 2


@pytest.mark.asyncio
async def test_a_killed_process_leaves_presence_within_the_expiry(
    server_processes: Callable[..., ServerProcess],
    redis_url: str,
    redis_prefix: str,
    clients: Callable[[str], Awaitable[WsClient]],
) -> None:
    a, doomed = (server_processes(redis_url, redis_prefix) for _ in range(2))
    a.wait_ready()
    doomed.wait_ready()
    watcher, ghost = await clients(a.ws_url), await clients(doomed.ws_url)
    await ghost.ok("subscribe", channel="room")
    doomed.proc.kill()
    doomed.proc.wait()
    present = await watcher.ok("presence", channel="room")
    assert ghost.hello["client"] in present["clients"]  # no clean-up ran: only expiry helps
    await asyncio.sleep(TEST_TTL_S + 0.2)
    assert (await watcher.ok("presence", channel="room"))["clients"] == {}


@pytest.mark.asyncio
async def test_workers_forked_on_one_port_exchange_messages(
    server_processes: Callable[..., ServerProcess],
    redis_url: str,
    redis_prefix: str,
    clients: Callable[[str], Awaitable[WsClient]],
) -> None:
    server = server_processes(redis_url, redis_prefix, processes=2)
    server.wait_ready()
    by_node: dict[str, WsClient] = {}
    deadline = time.monotonic() + 10  # /readyz answers once the first worker listens
    while len(by_node) < 2 and time.monotonic() < deadline:
        client = await clients(server.ws_url)
        by_node.setdefault(client.hello["node"], client)
        if len(by_node) < 2:
            await asyncio.sleep(0.02)
    assert len(by_node) == 2, "connections never landed on a second worker"
    sub, pub = by_node.values()
    await sub.ok("subscribe", channel="shared")
    await pub.ok("publish", channel="shared", data="across workers")
    assert (await sub.push_of("pub"))["data"] == "across workers"
    assert server.stop() == 0, server.log()


def test_several_processes_without_redis_are_refused() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    done = subprocess.run(
        [sys.executable, "-m", "server", "--dev", "--processes", "2", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "needs [redis] url" in done.stderr
