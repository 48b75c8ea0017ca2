"""Bounded channel state: a channel holds state only while it has subscribers or history.

Anonymous clients can name any number of channels; what they touch must not stay behind.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from server import sequencer
from server.app import build_node
from server.broker import redis_conn
from server.broker.memory import MemoryBroker
from server.node import Node
from server.position import Position
from server.store.memory import MemoryStore
from tests.node_client import NodeClient
from tests.support import make_config

pytestmark = pytest.mark.asyncio


async def touch_everything(node: Node, prefix: str, count: int) -> None:
    """What an anonymous flood does: read, subscribe, publish and leave many channels."""
    client = NodeClient("flood")
    node.hub.add_client(client)

    async def read(i: int) -> None:
        await node.history(f"{prefix}{i}", None, 10, False)
        await node.presence_of(f"{prefix}{i}")

    for start in range(0, count, 500):
        await asyncio.gather(*(read(i) for i in range(start, min(count, start + 500))))
    for i in range(0, count, 10):
        channel = f"quiet:{prefix}{i}"
        result, pos = await node.subscribe(client, channel, None)
        node.release(client, channel, pos)
        await node.publish(channel, {"n": i}, None)
        await node.unsubscribe(client, channel)
    await node.client_gone(client)


async def test_reading_a_channel_that_never_existed_creates_nothing() -> None:
    node = build_node(make_config())
    await node.start()
    try:
        result = await node.history("never-used", None, 10, False)
        assert result == {"publications": [], "offset": 0, "epoch": ""}
        assert await node.presence_of("never-used") == {"clients": {}}
        assert isinstance(node.broker, MemoryBroker) and not node.broker._positions
        assert isinstance(node.store, MemoryStore) and not node.store._history
    finally:
        await node.close()


async def test_a_history_reply_of_an_unused_channel_recovers_from_its_first_publication() -> None:
    node = build_node(make_config())
    node.recoveries.hole_wait_s = 0.1
    await node.start()
    try:
        before = await node.history("later", None, 10, False)
        for n in range(3):
            await node.publish("later", n, None)
        client = NodeClient("c")
        node.hub.add_client(client)
        since = Position(before["offset"], before["epoch"])
        result, _ = await node.subscribe(client, "later", since)
        assert result["recovered"] is True
        missed = orjson.loads(orjson.dumps(result["missed"]))
        assert [p["offset"] for p in missed] == [1, 2, 3]
    finally:
        await node.close()


async def test_positions_of_channels_nobody_uses_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sequencer, "IDLE_TTL_S", 0.3)
    node = build_node(make_config())
    await node.start()
    try:
        await touch_everything(node, "m", 2000)
        kept = NodeClient("keeper")
        node.hub.add_client(kept)
        result, pos = await node.subscribe(kept, "quiet:held", None)
        node.release(kept, "quiet:held", pos)
        assert isinstance(node.broker, MemoryBroker)
        assert len(node.broker._positions) == 201  # 200 flooded + the held one
        await asyncio.sleep(0.4)
        await node.keep_channels()
        assert list(node.broker._positions) == ["quiet:held"]  # its subscriber keeps it
        assert not node.store._history  # type: ignore[attr-defined]
        assert node.delivery._last.keys() == node._broker_subs.keys() == {"quiet:held"}
    finally:
        await node.close()


async def test_redis_keys_expire_unless_kept(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sequencer, "IDLE_TTL_S", 1.0)
    node = build_node(make_config(redis={"url": redis_url, "prefix": redis_prefix}))
    admin = redis_conn.client(redis_url)
    await node.start()

    async def keys() -> list[bytes]:
        return [k async for k in admin.scan_iter(match=f"{redis_prefix}:pos:*")]

    try:
        await touch_everything(node, "r", 20_000)
        # Only what was published to (and not expired yet): reading made none.
        assert 0 < len(await keys()) <= 2000
        await node.publish("hist", 1, None)  # history namespace: kept as long as its history
        ttl_ms = await admin.pttl(f"{redis_prefix}:pos:{{hist}}")
        assert 590_000 < ttl_ms <= 600_000
        await asyncio.sleep(1.2)
        assert [k.decode() for k in await keys()] == [f"{redis_prefix}:pos:{{hist}}"]
    finally:
        await node.close()
        await admin.aclose()
