"""The broker contract: the same test bodies over the in-memory and the Redis brokers."""

from __future__ import annotations

import asyncio

import pytest

from server.broker.base import Backlogged, Broker
from server.position import Position
from tests.broker_recorder import Recorder


async def started(broker: Broker) -> Recorder:
    recorder = Recorder()
    await broker.start(recorder)
    return recorder


@pytest.mark.asyncio
async def test_a_channel_needs_a_seed_then_counts_from_it(any_broker: Broker) -> None:
    await started(any_broker)
    assert await any_broker.position("c") is None
    assert await any_broker.publish("c", b'{"x":1}', 0, 60) is None
    await any_broker.seed("c", Position(7, "e1"), None, 60)
    await any_broker.seed("c", Position(0, "e2"), None, 60)  # set-if-absent: the first seed stays
    assert await any_broker.position("c") == Position(7, "e1")
    assert await any_broker.publish("c", b'{"x":1}', 0, 60) == Position(8, "e1")
    assert await any_broker.publish("c", b'{"x":2}', 0, 60) == Position(9, "e1")
    assert await any_broker.position("c") == Position(9, "e1")


@pytest.mark.asyncio
async def test_subscribers_receive_every_publication_in_offset_order(any_broker: Broker) -> None:
    rec = await started(any_broker)
    await any_broker.subscribe("a")
    await any_broker.seed("a", Position(0, "ep"), None, 60)
    bodies = [b'{"channel":"a","data":%d}' % i for i in range(300)]
    positions = await asyncio.gather(*(any_broker.publish("a", b, 0, 60) for b in bodies))
    assert sorted(p.offset for p in positions if p) == list(range(1, 301))
    by_offset = {p.offset: b for p, b in zip(positions, bodies, strict=True) if p}
    for offset in range(1, 301):
        assert await rec.next() == ("pub", "a", offset, "ep", by_offset[offset])


@pytest.mark.asyncio
async def test_only_subscribed_channels_are_delivered(any_broker: Broker) -> None:
    rec = await started(any_broker)
    for channel in ("a", "b"):
        await any_broker.seed(channel, Position(0, "ep"), None, 60)
    await any_broker.subscribe("a")
    await any_broker.subscribe("b")
    await any_broker.unsubscribe("b")
    await any_broker.publish("b", b'{"n":1}', 0, 60)
    await any_broker.publish("never:subscribed", b"{}", 0, 60)
    await any_broker.publish("a", b'{"n":2}', 0, 60)
    assert await rec.next() == ("pub", "a", 1, "ep", b'{"n":2}')
    assert rec.events.empty()


@pytest.mark.asyncio
async def test_join_and_leave_reach_subscribed_channels(any_broker: Broker) -> None:
    rec = await started(any_broker)
    await any_broker.subscribe("room")
    await any_broker.publish_join_leave("elsewhere", "c0", b'{"push":"join"}')
    frame = b'{"push":"join","channel":"room","client":"c1","user":"u:1"}'
    await any_broker.publish_join_leave("room", "c1", frame)
    assert await rec.next() == ("join_leave", "room", "c1", frame)
    assert rec.events.empty()


@pytest.mark.asyncio
async def test_control_messages_reach_this_process(any_broker: Broker) -> None:
    rec = await started(any_broker)
    await any_broker.publish_control(b'{"op":"disconnect","user":"42"}')
    assert await rec.next() == ("control", b'{"op":"disconnect","user":"42"}')


@pytest.mark.asyncio
async def test_cluster_stats_include_this_process(any_broker: Broker) -> None:
    await started(any_broker)
    local = {"node": "n-1", "connections": 3}
    assert await any_broker.cluster_stats(local) == [local]


@pytest.mark.asyncio
async def test_a_reachable_broker_passes_its_check(any_broker: Broker) -> None:
    await started(any_broker)
    await any_broker.check()


@pytest.mark.asyncio
async def test_a_channel_with_history_hands_out_at_most_a_window_beyond_the_store(
    any_broker: Broker,
) -> None:
    await started(any_broker)
    await any_broker.seed("h", Position(5, "ep"), 5, 60)
    assert [await any_broker.publish("h", b"{}", 3, 60) for _ in range(3)] == [
        Position(o, "ep") for o in (6, 7, 8)
    ]
    with pytest.raises(Backlogged):
        await any_broker.publish("h", b"{}", 3, 60)
    assert await any_broker.position("h") == Position(8, "ep")  # the refused one took nothing
    any_broker.stored("h", Position(7, "other-epoch"))  # another epoch's report: ignored
    any_broker.stored("h", Position(6, "ep"))
    any_broker.stored("h", Position(7, "ep"))  # reports of one turn: the newest counts
    await any_broker.position("h")  # one round trip after the report
    assert await any_broker.publish("h", b"{}", 3, 60) == Position(9, "ep")
    assert await any_broker.publish("h", b"{}", 3, 60) == Position(10, "ep")
    with pytest.raises(Backlogged):
        await any_broker.publish("h", b"{}", 3, 60)


@pytest.mark.asyncio
async def test_a_channel_without_history_has_no_window(any_broker: Broker) -> None:
    await started(any_broker)
    await any_broker.seed("n", Position(0, "ep"), None, 60)
    for offset in range(1, 21):
        assert await any_broker.publish("n", b"{}", 0, 60) == Position(offset, "ep")


@pytest.mark.asyncio
async def test_publish_many_sends_in_order_as_many_as_the_window_allows(
    any_broker: Broker,
) -> None:
    rec = await started(any_broker)
    await any_broker.subscribe("m")
    bodies = [b'{"n":%d}' % i for i in range(5)]
    assert await any_broker.publish_many("m", bodies, 3, 60) is None  # to be seeded first
    await any_broker.seed("m", Position(10, "ep"), 10, 60)
    assert await any_broker.publish_many("m", bodies, 3, 60) == [
        Position(o, "ep") for o in (11, 12, 13)
    ]
    with pytest.raises(Backlogged):
        await any_broker.publish_many("m", bodies[3:], 3, 60)
    for offset, body in zip((11, 12, 13), bodies, strict=False):
        assert await rec.next() == ("pub", "m", offset, "ep", body)
    await any_broker.seed("free", Position(0, "ep"), None, 60)
    await any_broker.subscribe("free")
    assert await any_broker.publish_many("free", bodies, 0, 60) == [
        Position(o, "ep") for o in range(1, 6)
    ]
    for offset, body in zip(range(1, 6), bodies, strict=True):
        assert await rec.next() == ("pub", "free", offset, "ep", body)
