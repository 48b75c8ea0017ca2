"""A client that stops reading is closed with 4009 and never slows anyone else or grows memory."""

from __future__ import annotations

import asyncio
import time

import orjson
import psutil
import pytest
import pytest_asyncio

from tests.support import (
    RunningServer,
    WsClient,
    make_config,
    masked,
    raw_ws_connect,
    start_server,
    ws_open,
)

pytestmark = pytest.mark.asyncio
CAP = 256 * 1024


@pytest_asyncio.fixture
async def capped():
    server = await start_server(
        make_config(
            server={"max_pending_bytes": CAP}, limits={"command_rate": 1e4, "command_burst": 10**4}
        )
    )
    yield server
    await server.stop()


async def test_stalled_reader_is_dropped_and_others_are_not_delayed(capped: RunningServer):
    fast = [await ws_open(capped.ws_url) for _ in range(5)]
    try:
        await check_stalled_reader(capped, fast)
    finally:
        for c in fast:
            await c.close()


async def check_stalled_reader(capped: RunningServer, fast: list[WsClient]) -> None:
    node = capped.node
    for c in fast:
        await c.ok("subscribe", channel="quiet:load")
    slow = await raw_ws_connect(capped.port, rcvbuf=4096)
    await asyncio.get_running_loop().sock_sendall(
        slow, masked(orjson.dumps({"id": 1, "op": "subscribe", "channel": "quiet:load"}))
    )
    deadline = time.monotonic() + 5
    while node.hub.subscriber_count("quiet:load") < 6:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    rss_before = psutil.Process().memory_info().rss
    payload = "x" * 8000
    publisher = fast[0]
    latencies: list[float] = []
    total = 400  # 3.2 MB to every subscriber: over ten times the cap
    for i in range(total):
        sent = time.monotonic()
        await publisher.ok("publish", channel="quiet:load", data={"i": i, "p": payload})
        for c in fast:
            pub = await c.push_of("pub")
            assert pub["data"]["i"] == i
        latencies.append(time.monotonic() - sent)
    assert node.hub.subscriber_count("quiet:load") == 5  # the stalled one is gone
    assert node.hub.client_count == 5
    latencies.sort()
    assert latencies[int(total * 0.99)] < 0.25, latencies[-5:]
    growth = psutil.Process().memory_info().rss - rss_before
    assert growth < 16 * 1024 * 1024, growth
    # What the stalled client can still read ends with a close frame carrying 4009.
    slow.setblocking(True)
    slow.settimeout(10)
    data = b""
    while True:
        chunk = await asyncio.to_thread(slow.recv, 65536)
        if not chunk:
            break
        data += chunk
    assert b"\x88\x11\x0f\xa9client too slow" in data  # close frame, code 4009
    slow.close()
