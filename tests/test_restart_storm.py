"""A restart's reconnect storm against the MongoDB store: one seed and one history read per
channel serve every subscriber coming back, and what each gets is what a read of its own finds.

Issue 19: 200 clients of 10 channels took 50 s to recover after a restart, each voiding the
channel's skipped offsets again and reading history on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from server import recovery
from server.app import build_node
from server.config import Config, MongoConfig
from server.node import Node
from server.position import Position
from server.recovery import unstored_window
from server.store.base import VOID
from server.store.mongo import MongoStore
from tests.support import make_config

pytestmark = pytest.mark.asyncio
HIST = {"history_size": 64, "history_ttl_s": 600}


def config(mongo: MongoConfig) -> Config:
    return make_config(
        mongo={"url": mongo.url, "database": mongo.database}, namespaces={"hist": HIST}
    )


@pytest_asyncio.fixture
async def restarted(mongo_config: MongoConfig) -> AsyncIterator[tuple[Node, Position]]:
    """A node that published to hist:c, then a fresh node (its broker knows nothing)."""
    first = build_node(config(mongo_config))
    await first.start()
    for i in range(3):
        last = await first.publish("hist:c", {"i": i}, None)
    await first.close()
    node = build_node(config(mongo_config))
    await node.start()
    yield node, last
    await node.close()


async def test_concurrent_subscribers_share_one_seed_past_the_window(
    restarted: tuple[Node, Position],
) -> None:
    node, last = restarted
    ns = node.config.namespaces["hist"]
    assert ns is not None
    positions = await asyncio.gather(*(node.sequencer.position("hist:c", ns) for _ in range(30)))
    window = unstored_window(ns)
    assert set(positions) == {Position(last.offset + window, last.epoch)}
    kept = await node.store.span("hist:c", last.epoch, last.offset + 1, last.offset + window)
    assert kept == [(o, VOID) for o in range(last.offset + 1, last.offset + window + 1)]
    assert not node.sequencer._seeding  # nothing left behind


async def test_recovering_subscribers_all_get_the_same_complete_answer(
    restarted: tuple[Node, Position],
) -> None:
    node, last = restarted
    ns = node.config.namespaces["hist"]
    assert ns is not None
    upto = await node.sequencer.position("hist:c", ns)
    answers = await asyncio.gather(
        *(
            recovery.missed(node.store, "hist:c", ns, Position(since, last.epoch), upto)
            for since in [0] * 10 + [1] * 10 + [2] * 10
        )
    )
    assert all(complete for complete, _ in answers)
    for since, (_, pubs) in zip([0] * 10 + [1] * 10 + [2] * 10, answers, strict=True):
        assert [o for o, _ in pubs] == list(range(since + 1, last.offset + 1))


async def test_a_read_begun_before_a_write_takes_no_new_readers(
    mongo_store: MongoStore,
) -> None:
    await mongo_store.append("w", "ep", 1, b'{"n":1}', 100, 600)
    early = asyncio.ensure_future(mongo_store.span("w", "ep", 0, 3))
    joined = asyncio.ensure_future(mongo_store.span("w", "ep", 1, 3))  # joins the early read
    await asyncio.sleep(0)
    await mongo_store.void("w", "ep", [2], 600)  # finished: later readers must see it
    after = await mongo_store.span("w", "ep", 1, 3)
    assert (2, VOID) in after
    first, second = await early, await joined
    assert [o for o, _ in second] == [o for o, _ in first if o >= 1]
