"""Recovery and outages through the protocol, with the MongoDB store under a real server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tornado.testing

from server.config import Config, MongoConfig
from server.store.embedded import EmbeddedMongo
from tests.support import RunningServer, http, make_config, start_server, ws_open

pytestmark = pytest.mark.asyncio
HIST = {"history_size": 1000, "history_ttl_s": 600}


def mongo_server_config(mongo: MongoConfig) -> Config:
    return make_config(
        mongo={"url": mongo.url, "database": mongo.database}, namespaces={"hist": HIST}
    )


@pytest_asyncio.fixture
async def server(mongo_config: MongoConfig) -> AsyncIterator[RunningServer]:
    running = await start_server(mongo_server_config(mongo_config))
    yield running
    await running.stop()


async def test_resubscribing_clients_get_every_publication_once_in_order(
    server: RunningServer,
) -> None:
    channel, publishers, per_publisher = "hist:live", 4, 100
    total = publishers * per_publisher
    watcher = await ws_open(server.ws_url)
    epoch = (await watcher.ok("subscribe", channel=channel))["epoch"]

    async def publish(n: int) -> None:
        ws = await ws_open(server.ws_url)
        for i in range(per_publisher):
            await ws.ok("publish", channel=channel, data={"p": n, "i": i})
        await ws.close()

    async def follow(rng: random.Random) -> list[int]:
        await asyncio.sleep(rng.uniform(0, 0.5))
        ws = await ws_open(server.ws_url)
        first = await ws.ok("subscribe", channel=channel)
        assert first["epoch"] == epoch
        seen = [first["offset"]]  # where the sequence starts: the position at subscribe
        for _ in range(rng.randint(0, 5)):
            if seen[-1] < total:
                seen.append((await ws.push_of("pub"))["offset"])
        await ws.close()
        await asyncio.sleep(rng.uniform(0, 0.3))  # publications go by while away
        ws = await ws_open(server.ws_url)
        again = await ws.ok(
            "subscribe", channel=channel, since={"offset": seen[-1], "epoch": epoch}
        )
        assert again["recovered"] is True, again
        seen += [p["offset"] for p in again["missed"]]
        while seen[-1] < total:
            seen.append((await ws.push_of("pub"))["offset"])
        await ws.close()
        return seen

    followers = [asyncio.ensure_future(follow(random.Random(i))) for i in range(50)]
    await asyncio.gather(*(publish(n) for n in range(publishers)))
    for seen in await asyncio.wait_for(asyncio.gather(*followers), 60):
        assert seen == list(range(seen[0], total + 1))
    await watcher.close()


async def test_mongodb_outage_is_clear_and_loses_nothing_acknowledged(data_dir: Path) -> None:
    sock, port = tornado.testing.bind_unused_port()
    sock.close()
    mongo = EmbeddedMongo(data_dir, port=port)
    url = f"mongodb://127.0.0.1:{port}/"
    # the server comes up without MongoDB, says why, and uses it once it is there
    running = await start_server(mongo_server_config(MongoConfig(url=url, database="outage")))
    try:
        status, body = await http(running, "GET", "/readyz")
        assert status == 503 and f"127.0.0.1:{port}" in body["problems"]["store"], body
        await asyncio.to_thread(mongo.start)
        ws, watcher = await ws_open(running.ws_url), await ws_open(running.ws_url)
        await watcher.ok("subscribe", channel="hist:x")
        acked = [(await ws.ok("publish", channel="hist:x", data=i))["offset"] for i in range(10)]
        await asyncio.to_thread(mongo.stop)

        reply = await ws.call("publish", channel="hist:x", data="lost", timeout=10)
        assert reply["error"]["code"] == "unavailable"
        assert "MongoDB" in reply["error"]["message"], reply
        assert "storing publications failed" in reply["error"]["message"], reply
        # Once an append failed, publishes check the store first: refused, never broadcast.
        reply = await ws.call("publish", channel="hist:x", data="refused early", timeout=10)
        assert reply["error"]["code"] == "unavailable", reply
        live = [(await watcher.push_of("pub"))["data"] for _ in range(11)]
        assert live == [*range(10), "lost"]
        with pytest.raises(TimeoutError):
            await watcher.push_of("pub", timeout=0.3)
        await watcher.close()
        assert "offset" in await ws.ok("publish", channel="quiet:y", data="no history here")
        status, body = await http(running, "GET", "/readyz")
        assert status == 503 and "MongoDB" in body["problems"]["store"], body

        await asyncio.to_thread(mongo.start)
        acked.append(await publish_when_back(ws, "hist:x", "back"))
        status, body = await http(running, "GET", "/readyz")
        assert status == 200, body
        history = await ws.ok("history", channel="hist:x", limit=1000)
        stored = {p["offset"] for p in history["publications"]}
        assert set(acked) <= stored and len(acked) == 11
        await ws.close()
    finally:
        await running.stop()
        await asyncio.to_thread(mongo.stop)


async def publish_when_back(ws: Any, channel: str, data: Any) -> int:
    """Publish until the store is back (the driver reconnects by itself); the offset."""
    for _ in range(100):
        reply = await ws.call("publish", channel=channel, data=data, timeout=10)
        if "error" not in reply:
            return int(reply["result"]["offset"])
        assert reply["error"]["code"] == "unavailable", reply
        await asyncio.sleep(0.1)
    raise AssertionError("the store did not come back")
