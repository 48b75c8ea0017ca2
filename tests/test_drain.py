"""Graceful drain on SIGTERM and the rolling restart of `--processes N` on SIGHUP, for real."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.server_processes import ServerProcess
from tests.support import WsClient, ws_open


def drain_for(seconds: float) -> dict[str, str]:
    """Settings for a drain spread over `seconds`, with 3 s of grace after it."""
    return {"SWITCHBOARD_SERVER_DRAIN_S": str(seconds), "SWITCHBOARD_SERVER_SHUTDOWN_GRACE_S": "3"}


DRAIN = drain_for(1.5)


async def told_to_go(client: WsClient) -> tuple[float, dict[str, object], int | None]:
    """When the drain reached this client, its disconnect push and the close code."""
    push = await client.push_of("disconnect", timeout=15)
    at = time.monotonic()
    return at, push, await client.closed(timeout=5)


async def drain_begun(server: ServerProcess, clients: list[WsClient]) -> list[asyncio.Future[Any]]:
    """SIGTERM, then wait until the first client is told to go (the workers have stopped
    accepting by then); returns every client's wait for its `disconnect` push."""
    server.proc.send_signal(signal.SIGTERM)
    told = [asyncio.ensure_future(c.push_of("disconnect", timeout=15)) for c in clients]
    await asyncio.wait(told, return_when=asyncio.FIRST_COMPLETED)
    return told


@pytest.mark.asyncio
async def test_sigterm_drains_clients_spread_over_drain_s_then_exits(
    server_processes: Callable[..., ServerProcess], redis_url: str, redis_prefix: str
) -> None:
    server = server_processes(redis_url, redis_prefix, env=DRAIN)
    server.wait_ready()
    clients = [await ws_open(server.ws_url) for _ in range(60)]
    for c in clients[:20]:
        await c.ok("subscribe", channel="news")
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*(told_to_go(c) for c in clients))
    times = sorted(at - began for at, _, _ in results)
    for _, push, code in results:
        assert push["code"] == 1012 and push["reconnect"] is True
        assert (
            isinstance(push["reconnect_delay_ms"], int) and 0 <= push["reconnect_delay_ms"] <= 1000
        )
        assert code == 1012
    # Spread over the drain, not all at once: the last goes over a second after the first.
    assert times[-1] - times[0] > 1.0, times
    assert times[-1] < 1.5 + 2.0, times
    assert await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 10) == 0
    assert "draining 60 clients" in server.log()
    for c in clients:
        await c.close()


@pytest.mark.asyncio
async def test_sighup_replaces_every_worker_one_at_a_time_without_refusing_a_connect(
    server_processes: Callable[..., ServerProcess], redis_url: str, redis_prefix: str
) -> None:
    server = server_processes(redis_url, redis_prefix, processes=2, env=DRAIN)
    server.wait_ready()
    old_nodes: set[str] = set()
    held = []
    for _ in range(30):
        client = await ws_open(server.ws_url)
        old_nodes.add(client.hello["node"])
        held.append(client)
    os.kill(server.proc.pid, signal.SIGHUP)
    failures, seen = 0, set()
    deadline = time.monotonic() + 25
    drained = asyncio.gather(*(told_to_go(c) for c in held))
    while time.monotonic() < deadline:
        try:
            probe = await ws_open(server.ws_url)  # the port accepts throughout the roll
            seen.add(probe.hello["node"])
            await probe.close()
        except OSError:
            failures += 1
        if drained.done() and len(seen - old_nodes) >= 2:
            break
        await asyncio.sleep(0.05)
    results = await drained
    assert failures == 0
    assert all(push["reconnect"] is True and code == 1012 for _, push, code in results)
    fresh = set()
    for _ in range(20):
        probe = await ws_open(server.ws_url)
        fresh.add(probe.hello["node"])
        await probe.close()
    assert fresh and not fresh & old_nodes, "a worker from before the reload still serves"
    assert server.proc.poll() is None, "the parent must survive SIGHUP"
    pids = {n.split("-")[-2] for n in old_nodes | fresh}
    assert len(pids) == len(old_nodes | fresh)
    assert "rolling restart of 2 workers" in server.log()
    for c in held:
        await c.close()


@pytest.mark.asyncio
async def test_a_stopping_port_refuses_connects_rather_than_queueing_them_unaccepted(
    server_processes: Callable[..., ServerProcess], redis_url: str, redis_prefix: str
) -> None:
    """With --processes, the parent holds the listening socket too: unless it lets go, the
    kernel keeps completing connects that no worker will ever accept, and a proxy in front
    waits on them until the last process exits instead of trying another host."""
    server = server_processes(redis_url, redis_prefix, processes=2, env=drain_for(4))
    server.wait_ready()
    clients = [await ws_open(server.ws_url) for _ in range(80)]
    told = await drain_begun(server, clients)
    refused = False
    deadline = time.monotonic() + 1.0
    while not refused and time.monotonic() < deadline:
        try:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=0.5)
            sock.close()
            await asyncio.sleep(0.05)
        except ConnectionRefusedError:
            refused = True
    assert refused, "connects still completed while the workers were draining"
    assert not all(t.done() for t in told)  # ... and the drain had not finished
    await asyncio.gather(*told)
    assert await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 15) == 0
    for c in clients:
        await c.close()


@pytest.mark.asyncio
async def test_while_draining_upgrades_on_kept_alive_connections_get_503_and_readyz_says_so(
    server_processes: Callable[..., ServerProcess], redis_url: str, redis_prefix: str
) -> None:
    """A proxy's keep-alive connection outlives the listening socket: an upgrade arriving on
    it must be refused (the proxy then tries another host), never accepted and dropped."""
    server = server_processes(redis_url, redis_prefix, env=drain_for(3))
    server.wait_ready()
    kept = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=5) for _ in range(2)]
    for conn in kept:  # open and kept alive before the drain
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read()
    clients = [await ws_open(server.ws_url) for _ in range(40)]
    first = await drain_begun(server, clients)
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }

    def ask(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> Any:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Connection"), resp.read()

    loop = asyncio.get_running_loop()
    status, _, _ = await loop.run_in_executor(None, ask, kept[0], "/ws", upgrade)
    assert status == 503
    status, connection, body = await loop.run_in_executor(None, ask, kept[1], "/readyz", {})
    assert status == 503 and json.loads(body)["problems"]["server"] == "draining"
    assert connection == "close"  # a proxy stops reusing it
    assert not all(t.done() for t in first)
    await asyncio.gather(*first)
    for conn in kept:
        conn.close()
    for c in clients:
        await c.close()
