"""Keep-alive: quiet connections get pings; one that answers nothing is dropped."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from server.hub import Hub
from server.keepalive import KeepAlive
from server.ws.frame import PING as PING_FRAME
from tests.support import make_config, raw_ws_connect, start_server, ws_open


@dataclass(eq=False)
class FakeClient:
    id: str
    user: str | None = None
    alive: bool = True
    frames: list[bytes] = field(default_factory=list)
    closed: int | None = None

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def disconnect(self, code: int, reason: str, reconnect: bool) -> None:
        self.closed = code


def test_visit_pings_then_drops_the_silent():
    c = FakeClient("a")
    KeepAlive.visit(c)
    assert c.frames == [PING_FRAME] and c.alive is False and c.closed is None
    c.alive = True  # it answered
    KeepAlive.visit(c)
    assert c.frames == [PING_FRAME, PING_FRAME] and c.closed is None
    KeepAlive.visit(c)  # it did not
    assert c.closed == 1001


@pytest.mark.asyncio
async def test_a_round_visits_everyone_once_spread_over_the_interval():
    hub = Hub()
    clients = [FakeClient(str(i)) for i in range(10)]
    for c in clients:
        hub.add_client(c)
    keepalive = KeepAlive(hub.clients, interval_s=5)
    keepalive._tick()
    assert sum(len(c.frames) for c in clients) == 2  # a fifth of them each second
    for _ in range(9):
        keepalive._tick()
    assert [len(c.frames) for c in clients] == [1] * 10  # a round lasts the whole interval


@pytest_asyncio.fixture
async def fast_pings():
    server = await start_server(make_config(server={"ping_interval_s": 1}))
    yield server
    await server.stop()


@pytest.mark.asyncio
async def test_silent_socket_dropped_answering_one_kept(fast_pings):
    talking = await ws_open(fast_pings.ws_url)  # Tornado's client answers pings by itself
    silent = await raw_ws_connect(fast_pings.port)
    try:
        assert fast_pings.node.hub.client_count == 2
        deadline = time.monotonic() + 6
        while fast_pings.node.hub.client_count > 1:
            assert time.monotonic() < deadline, "the silent socket was not dropped"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)
        assert await talking.ok("ping") == {}
        assert fast_pings.node.hub.client(talking.hello["client"]) is not None
    finally:
        silent.close()
        await talking.close()
