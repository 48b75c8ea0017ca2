"""Presence in Redis across processes: shared, renewed by a heartbeat, expiring with its process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from server.broker import redis_conn
from server.presence.redis import RedisPresence
from tests.fixtures.redis import redis_presence
from tests.redis_server import TEST_TTL_S


@pytest_asyncio.fixture
async def presences(
    redis_url: str, redis_prefix: str
) -> AsyncIterator[Callable[[], RedisPresence]]:
    """Make presences of separate "processes" sharing one Redis and prefix."""
    made: list[RedisPresence] = []

    def make() -> RedisPresence:
        made.append(redis_presence(redis_url, redis_prefix))
        return made[-1]

    yield make
    for presence in made:
        await presence.close()
        await presence._client.aclose()  # a broker would own it


@pytest.mark.asyncio
async def test_processes_see_each_others_clients(presences: Callable[[], RedisPresence]) -> None:
    a, b = presences(), presences()
    await a.start()
    await b.start()
    await a.add("room", "ca", {"user": "1", "name": "A"})
    await b.add("room", "cb", {"user": "2", "name": "B"})
    both = {"ca": {"user": "1", "name": "A"}, "cb": {"user": "2", "name": "B"}}
    assert await a.get("room") == both
    assert await b.get("room") == both


@pytest.mark.asyncio
async def test_a_live_process_keeps_its_clients_past_the_expiry(
    presences: Callable[[], RedisPresence],
) -> None:
    a = presences()
    await a.start()
    await a.add("room", "ca", {"user": "1", "name": None})
    await asyncio.sleep(TEST_TTL_S * 2.5)
    assert list(await a.get("room")) == ["ca"]


@pytest.mark.asyncio
async def test_a_dead_process_leaves_presence_within_the_expiry(
    presences: Callable[[], RedisPresence],
) -> None:
    dead, alive = presences(), presences()
    await dead.start()
    await alive.start()
    await dead.add("room", "gone", {"user": "1", "name": None})
    await alive.add("room", "here", {"user": "2", "name": None})
    await dead.close()  # stops the heartbeat without removing anything, as SIGKILL would
    assert set(await alive.get("room")) == {"gone", "here"}
    await asyncio.sleep(TEST_TTL_S * 1.2)
    assert list(await alive.get("room")) == ["here"]


@pytest.mark.asyncio
async def test_the_heartbeat_restores_entries_redis_lost(
    presences: Callable[[], RedisPresence], redis_url: str, redis_prefix: str
) -> None:
    a = presences()
    await a.start()
    await a.add("room", "ca", {"user": "1", "name": None})
    direct = redis_conn.client(redis_url)
    await direct.delete(*[k async for k in direct.scan_iter(f"{redis_prefix}:presence*")])
    await direct.aclose()
    assert await a.get("room") == {}
    await asyncio.sleep(TEST_TTL_S / 3 + 0.3)
    assert list(await a.get("room")) == ["ca"]
