"""The Redis broker beyond the contract: several processes, prefixes, and Redis going away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
import redis.asyncio

from server.broker.base import BrokerUnavailable
from server.broker.redis import RedisBroker
from server.broker.redis_conn import PackedConnection
from server.position import Position
from tests.broker_recorder import Recorder
from tests.fixtures.redis import redis_broker
from tests.redis_server import TEST_TTL_S, RedisProcess

Make = Callable[..., Awaitable[tuple[RedisBroker, Recorder]]]


@pytest_asyncio.fixture
async def brokers(redis_prefix: str) -> AsyncIterator[Make]:
    """Start brokers standing for separate processes: make(url, prefix=this test's)."""
    made: list[RedisBroker] = []

    async def make(url: str, prefix: str = redis_prefix) -> tuple[RedisBroker, Recorder]:
        broker, recorder = redis_broker(url, prefix), Recorder()
        made.append(broker)
        await broker.start(recorder)
        return broker, recorder

    yield make
    for broker in made:
        await broker.close()


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def fails(aw: Awaitable[object]) -> bool:
    try:
        await aw
    except BrokerUnavailable:
        return True
    return False


@pytest.mark.asyncio
async def test_processes_share_one_order(brokers: Make, redis_url: str) -> None:
    (b1, rec1), (b2, rec2) = await brokers(redis_url), await brokers(redis_url)
    await b1.subscribe("c")
    await b2.subscribe("c")
    await b1.seed("c", Position(0, "ep"), None, 60)
    sent = await asyncio.gather(
        *(b.publish("c", b'{"n":%d}' % i, 0, 60) for i in range(500) for b in (b1, b2))
    )
    assert sorted(p.offset for p in sent if p) == list(range(1, 1001))
    for rec in (rec1, rec2):
        assert [(await rec.next())[2] for _ in range(1000)] == list(range(1, 1001))


@pytest.mark.asyncio
async def test_prefixes_keep_deployments_apart(
    brokers: Make, redis_url: str, redis_prefix: str
) -> None:
    (mine, rec), (theirs, _) = (
        await brokers(redis_url),
        await brokers(redis_url, redis_prefix + "-other"),
    )
    await mine.subscribe("c")
    await theirs.seed("c", Position(0, "theirs"), None, 60)
    await theirs.publish("c", b"{}", 0, 60)
    assert await mine.position("c") is None
    await theirs.publish_control(b'{"op":"x"}')
    await asyncio.sleep(0.1)
    assert rec.events.empty()


@pytest.mark.asyncio
async def test_stats_of_a_process_that_stopped_expire(brokers: Make, redis_url: str) -> None:
    (b1, _), (b2, _) = await brokers(redis_url), await brokers(redis_url)
    await b2.cluster_stats({"node": "two"})
    assert {s["node"] for s in await b1.cluster_stats({"node": "one"})} == {"one", "two"}
    await b2.close()
    await asyncio.sleep(TEST_TTL_S + 0.1)
    assert [s["node"] for s in await b1.cluster_stats({"node": "one"})] == ["one"]


@pytest.mark.asyncio
async def test_redis_going_away_and_coming_back(brokers: Make, own_redis: RedisProcess) -> None:
    broker, rec = await brokers(own_redis.url)
    await broker.subscribe("c")
    await broker.seed("c", Position(0, "ep"), None, 60)
    assert await broker.publish("c", b"{}", 0, 60) == Position(1, "ep")
    own_redis.stop()
    with pytest.raises(BrokerUnavailable, match="redis"):
        await broker.check()
    assert await fails(broker.publish("c", b"{}", 0, 60))
    assert await fails(broker.subscribe("d"))
    own_redis.start()
    await until(lambda: not rec.events.empty())
    assert (await rec.next_of("reconnected"))[0] == "reconnected"
    await broker.check()
    # Redis lost every position: the channel needs a seed again, and stays subscribed.
    assert await broker.publish("c", b"{}", 0, 60) is None
    await broker.seed("c", Position(1, "ep"), None, 60)
    assert await broker.publish("c", b'{"n":2}', 0, 60) == Position(2, "ep")
    assert (await rec.next_of("pub"))[2:] == (2, "ep", b'{"n":2}')


@pytest.mark.asyncio
async def test_a_broker_started_without_redis_connects_later(
    brokers: Make, own_redis: RedisProcess
) -> None:
    own_redis.stop()
    broker, rec = await brokers(own_redis.url)
    assert await fails(broker.check())
    own_redis.start()
    deadline = time.monotonic() + 10
    while await fails(broker.check()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await broker.subscribe("c")
    assert rec.events.empty()  # the first link is no *re*connection


@pytest.mark.parametrize(
    "args",
    [
        ("EVAL", "return 1", 1, "k", b"\x00\xffbody", 256, 3600000),
        ("CONFIG GET", "maxmemory"),
        (b"CLIENT SETNAME", "sb-node"),
        ("PUBLISH", "ch:é", "ü" * 10_000),
        ("INCRBYFLOAT", "k", 0.5),
    ],
)
def test_commands_are_packed_as_redis_py_packs_them(args: tuple[object, ...]) -> None:
    ours = PackedConnection().pack_command(*args)
    theirs = redis.asyncio.Connection().pack_command(*args)
    assert b"".join(ours) == b"".join(theirs)
