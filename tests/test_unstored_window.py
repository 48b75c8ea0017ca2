"""A channel's unstored window: publications past it wait for stores, are sent to the broker
once each, and are refused as unavailable only when the window stays full.

On both brokers: the memory broker and Redis (its window is checked in a Lua script, and the
stores that free it are reported by a separate script)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from server import recovery, sequencer
from server.app import build_node
from server.broker.base import Backlogged
from server.node import Node
from server.position import Position
from server.protocol import Code, ProtocolError
from tests.support import make_config

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["memory", "redis"])
async def node(request: pytest.FixtureRequest) -> AsyncIterator[Node]:
    sections: dict[str, Any] = {}
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        sections["redis"] = {"url": url, "prefix": prefix}
    n = build_node(make_config(**sections))
    await n.start()
    try:
        yield n
    finally:
        await n.close()


def window_of(node: Node, channel: str) -> int:
    return recovery.unstored_window(node.config.namespace_of(channel))


async def fill_window(node: Node, channel: str) -> list[Position]:
    """Publish unstored to the broker, as another process would, until the window is full."""
    window = window_of(node, channel)
    sent: list[Position] = []
    while True:
        try:
            got = await node.broker.publish_many(channel, [b"{}"], window, 600)
        except Backlogged:
            return sent
        assert got is not None
        sent += got


async def test_publications_past_the_window_wait_for_their_own_stores(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection pipelining more publishes than the window: no call carries more than the
    window, none is refused as backlogged (the batch waits for its own stores), in order."""
    channel = "pipelined"
    count = 3 * window_of(node, channel) + 7
    sent: list[int] = []
    backlogged = 0
    publish_many = node.broker.publish_many

    async def counted(
        channel: str, bodies: list[bytes], window: int, ttl_s: float
    ) -> list[Position] | None:
        nonlocal backlogged
        try:
            got = await publish_many(channel, bodies, window, ttl_s)
        except Backlogged:
            backlogged += 1
            raise
        if got is not None:  # None: not seeded yet, nothing sent
            sent.append(len(bodies))
        return got

    monkeypatch.setattr(node.broker, "publish_many", counted)
    positions = await asyncio.gather(*(node.publish(channel, i, None) for i in range(count)))
    assert [p.offset for p in positions] == list(range(1, count + 1))
    window = window_of(node, channel)
    assert max(sent) <= window, f"sent more than the window takes: {sent}"
    # Only a body the broker refused as past the window is sent again: a few at most.
    assert sum(sent) < count + window, f"bodies sent again and again: {sent}"
    assert backlogged == 0
    history = orjson.loads(orjson.dumps(await node.history(channel, None, 3, True)))
    assert [p["data"] for p in history["publications"]] == [count - 1, count - 2, count - 3]


async def test_a_window_filled_elsewhere_holds_a_publish_until_stored(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's unstored publications fill the window: a publish here waits, goes
    out once that process reports them stored, and is refused (unavailable) if it never does."""
    monkeypatch.setattr(sequencer, "BACKLOG_WAIT_S", 0.5)
    channel = "shared"
    first = await node.publish(channel, "first", None)
    others = await fill_window(node, channel)

    waiting = asyncio.ensure_future(node.publish(channel, "waits", None))
    await asyncio.sleep(0.2)
    assert not waiting.done(), "published past a full window"
    node.broker.stored(channel, others[-1])  # the other process stored its publications
    pos = await asyncio.wait_for(waiting, 2)
    assert pos.offset == first.offset + len(others) + 1

    await fill_window(node, channel)  # and these are never stored
    with pytest.raises(ProtocolError) as refused:
        await node.publish(channel, "refused", None)
    assert refused.value.code == Code.UNAVAILABLE
