"""The Redis claims, as two processes would use them, on one Redis and on a Redis Cluster: of
two processes holding a user, exactly one is told it came online and exactly one that it went
offline, only after the debounce with nobody left; a lapsed process lets go by itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from server.broker import redis_conn
from server.webhooks.claims import USER
from server.webhooks.redis_claims import RedisClaims, RedisClient

DEBOUNCE_S = 0.3
TTL_S = 0.6


@pytest_asyncio.fixture(params=["redis", "cluster"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[RedisClient]:
    c: RedisClient
    if request.param == "redis":
        c = redis_conn.client(request.getfixturevalue("redis_url"))
    else:
        c = redis_conn.cluster_client(request.getfixturevalue("redis_cluster").url)
    yield c
    await c.aclose()


def claims(client: RedisClient, prefix: str, node: str) -> RedisClaims:
    return RedisClaims(client, prefix, node, TTL_S, DEBOUNCE_S)


@pytest.mark.asyncio
async def test_two_processes_make_one_online_and_one_offline(
    client: RedisClient, redis_prefix: str
) -> None:
    a, b = claims(client, redis_prefix, "a"), claims(client, redis_prefix, "b")
    first, second = await asyncio.gather(a.appear(USER, ["42"]), b.appear(USER, ["42"]))
    assert len(first + second) == 1
    await a.vanish(USER, ["42"])
    await asyncio.sleep(DEBOUNCE_S + 0.1)
    assert await a.sweep(USER) == [] and await b.sweep(USER) == []  # b still holds 42
    await b.vanish(USER, ["42"])
    await asyncio.sleep(DEBOUNCE_S / 2)
    assert await a.sweep(USER) == []  # not before the debounce
    await asyncio.sleep(DEBOUNCE_S / 2 + 0.1)
    swept = await asyncio.gather(a.sweep(USER), b.sweep(USER))
    assert [k for s in swept for k, _ in s] == ["42"]
    ((_, online_seq),) = first + second
    ((_, offline_seq),) = swept[0] + swept[1]
    assert offline_seq > online_seq  # the order a backend receives them in


@pytest.mark.asyncio
async def test_a_reappearance_inside_the_debounce_changes_nothing(
    client: RedisClient, redis_prefix: str
) -> None:
    a = claims(client, redis_prefix, "a")
    assert [k for k, _ in await a.appear(USER, ["7"])] == ["7"]
    await a.vanish(USER, ["7"])
    await asyncio.sleep(DEBOUNCE_S / 3)
    assert await a.appear(USER, ["7"]) == []  # a reload: no second online
    await asyncio.sleep(DEBOUNCE_S + 0.1)
    assert await a.sweep(USER) == []


@pytest.mark.asyncio
async def test_a_process_that_stops_renewing_lets_go(
    client: RedisClient, redis_prefix: str
) -> None:
    dead, alive = claims(client, redis_prefix, "dead"), claims(client, redis_prefix, "alive")
    assert len(await dead.appear(USER, ["9"])) == 1
    await asyncio.sleep(TTL_S + DEBOUNCE_S + 0.2)
    assert [k for k, _ in await alive.sweep(USER)] == ["9"]
