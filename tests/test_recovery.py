"""Exact recovery: `recovered` is true only when every offset in the range is delivered or void.

The range proof runs against the in-memory store here (the MongoDB store passes the same store
contract in test_store_contract.py); the node's own recovery of a channel after a gap runs on a
real node with the in-memory broker and store.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from server import recovery
from server.app import build_broker, build_node, build_store
from server.hub import Hub
from server.node import Node
from server.position import Position
from server.store.base import StoreConflict
from server.store.memory import MemoryStore
from tests.node_client import NodeClient
from tests.support import make_config

pytestmark = pytest.mark.asyncio

NS = make_config().namespaces["default"]
assert NS is not None


def body(n: int) -> bytes:
    return orjson.dumps({"channel": "c", "data": n, "ts": 1})


async def stored(offsets: list[int]) -> MemoryStore:
    store = MemoryStore()
    for o in offsets:
        await store.append("c", "e", o, body(o), 1000, 600)
    return store


async def test_an_offset_still_being_written_is_waited_for_not_skipped() -> None:
    # Cause A of the faults issue: 6 not stored yet while 7-9 are; it was acknowledged later.
    store = await stored([1, 2, 3, 4, 5, 7, 8, 9])

    async def late() -> None:
        await asyncio.sleep(0.3)
        await store.append("c", "e", 6, body(6), 1000, 600)

    writer = asyncio.ensure_future(late())
    complete, pubs = await recovery.missed(store, "c", NS, Position(4, "e"), Position(9, "e"), 2.0)
    await writer
    assert complete is True
    assert [o for o, _ in pubs] == [5, 6, 7, 8, 9]
    assert pubs[1] == (6, body(6))


async def test_a_hole_in_the_middle_is_waited_for_too() -> None:
    # Cause B: a hole between stored offsets was reported unrecoverable at once.
    store = await stored([10, 11, 13, 14])
    writer = asyncio.ensure_future(asyncio.sleep(0.2))
    writer.add_done_callback(
        lambda _: asyncio.ensure_future(store.append("c", "e", 12, body(12), 1000, 600))
    )
    complete, pubs = await recovery.missed(
        store, "c", NS, Position(10, "e"), Position(14, "e"), 2.0
    )
    assert complete and [o for o, _ in pubs] == [11, 12, 13, 14]


async def test_a_never_stored_offset_is_made_void_and_can_never_be_acknowledged() -> None:
    store = await stored([1, 2, 4, 5])
    complete, pubs = await recovery.missed(store, "c", NS, Position(1, "e"), Position(5, "e"), 0.1)
    assert complete is True
    assert [o for o, _ in pubs] == [2, 4, 5]
    with pytest.raises(StoreConflict):  # its publisher comes back too late: not acknowledged
        await store.append("c", "e", 3, body(3), 1000, 600)
    again = await recovery.missed(store, "c", NS, Position(1, "e"), Position(5, "e"), 0.1)
    assert again == (True, pubs)


async def test_a_publication_that_wins_its_offset_before_the_void_is_delivered() -> None:
    store = await stored([1, 3])
    real_void = store.void

    async def void_after_a_late_write(
        channel: str, epoch: str, offsets: list[int], ttl: float
    ) -> None:
        await store.append("c", "e", 2, body(2), 1000, 600)  # lands between the wait and the void
        await real_void(channel, epoch, offsets, ttl)

    store.void = void_after_a_late_write  # type: ignore[method-assign]
    complete, pubs = await recovery.missed(store, "c", NS, Position(1, "e"), Position(3, "e"), 0.05)
    assert complete and [o for o, _ in pubs] == [2, 3]


async def test_holes_below_everything_kept_may_have_been_trimmed() -> None:
    store = await stored(list(range(50, 61)))  # 1-49 trimmed or expired
    complete, pubs = await recovery.missed(
        store, "c", NS, Position(5, "e"), Position(60, "e"), 0.05
    )
    assert complete is False
    assert [o for o, _ in pubs] == list(range(50, 61))  # what is kept still comes
    assert [o for o, _ in await store.span("c", "e", 1, 60)] == list(range(50, 61))  # no voids


async def test_since_itself_missing_is_fine_when_older_offsets_are_kept() -> None:
    # The client saw 5 live; 5 was never stored (its publisher died) but 1-4 are kept.
    store = await stored([1, 2, 3, 4, 7])
    complete, pubs = await recovery.missed(store, "c", NS, Position(5, "e"), Position(7, "e"), 0.05)
    assert complete is True and [o for o, _ in pubs] == [7]


@pytest.mark.parametrize(
    ("since", "upto", "expected"),
    [
        (Position(3, "old"), Position(9, "e"), (False, [])),  # another epoch
        (Position(12, "e"), Position(9, "e"), (False, [])),  # ahead of the channel
        (Position(9, "e"), Position(9, "e"), (True, [])),  # nothing to recover
    ],
)
async def test_positions_that_need_no_store(
    since: Position, upto: Position, expected: tuple[bool, list[object]]
) -> None:
    store = await stored([1, 2, 3])
    assert await recovery.missed(store, "c", NS, since, upto, 0.05) == expected


async def test_a_namespace_without_history_cannot_recover_a_gap() -> None:
    quiet = make_config().namespaces["quiet"]
    assert quiet is not None
    result = await recovery.missed(MemoryStore(), "c", quiet, Position(1, "e"), Position(2, "e"))
    assert result == (False, [])


# -- the node brings a channel up to date by itself --------------------------------------------


async def live_node() -> tuple[Node, NodeClient]:
    node = build_node(make_config())
    node.recoveries.hole_wait_s = 0.2
    await node.start()
    client = NodeClient("c1")
    node.hub.add_client(client)
    result, pos = await node.subscribe(client, "room", None)
    node.release(client, "room", pos)
    return node, client


async def test_a_gap_in_live_delivery_is_filled_from_the_store_in_order() -> None:
    node, client = await live_node()
    for n in range(3):
        await node.publish("room", n, None)
    # Publications 4-6 are stored but their live copies never arrive (a lost link).
    await node.broker.unsubscribe("room")
    for n in range(3, 6):
        await node.publish("room", n, None)
    await node.broker.subscribe("room")
    await node.publish("room", 6, None)  # offset 7 arrives live: a gap after 3
    await node.publish("room", 7, None)  # held while the channel catches up
    for _ in range(100):
        if len(client.offsets()) == 8:
            break
        await asyncio.sleep(0.02)
    assert client.offsets() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert not any(f.get("push") == "unsubscribed" for f in client.frames)
    await node.close()


async def test_a_gap_that_cannot_be_proven_complete_ends_the_subscriptions() -> None:
    node, client = await live_node()
    await node.publish("room", 0, None)
    node.on_publication("room", 5, "another-epoch", body(5))  # the channel's history was lost
    for _ in range(100):
        if client.frames and client.frames[-1].get("push") == "unsubscribed":
            break
        await asyncio.sleep(0.02)
    assert client.frames[-1] == {
        "push": "unsubscribed",
        "channel": "room",
        "reason": "insufficient_state",
    }
    assert client.offsets() == [1]
    await node.close()


async def test_after_a_broker_reconnect_a_quiet_channel_just_goes_on() -> None:
    node, client = await live_node()
    await node.publish("room", 0, None)
    node.on_reconnected()
    await node.publish("room", 1, None)
    for _ in range(50):
        if len(client.offsets()) == 2:
            break
        await asyncio.sleep(0.02)
    assert client.offsets() == [1, 2]
    assert not any(f.get("push") == "unsubscribed" for f in client.frames)
    await node.close()


async def test_a_subscription_flooded_while_it_recovers_is_told_to_recover_again() -> None:
    config = make_config()
    broker, presence = build_broker(config)
    node = Node(config, Hub(max_buffered_bytes=400), broker, build_store(config), presence)
    node.recoveries.hole_wait_s = 0.3
    await node.start()
    try:
        for n in range(3):
            await node.publish("room", n, None)
        pos = await node.sequencer.position("room", node.config.namespace_of("room"))
        # Offset 4 is handed out but never stored: recovery since 3 waits for it.
        await node.broker.publish("room", body(4), 100, 60)
        client = NodeClient("slow")
        node.hub.add_client(client)
        subscribing = asyncio.ensure_future(node.subscribe(client, "room", Position(3, pos.epoch)))
        await asyncio.sleep(0.05)
        for n in range(20):  # arrive while it is set up: more than its buffer holds
            await node.publish("room", n, None)
        result, reached = await subscribing
        node.release(client, "room", reached)
        assert client.frames[-1]["push"] == "unsubscribed"
        assert client.frames[-1]["reason"] == "insufficient_state"
        await asyncio.sleep(0.05)
        assert not node.hub.is_subscribed("room", client)
    finally:
        await node.close()
