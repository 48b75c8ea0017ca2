"""The MongoDB store's void protocol, one interleaving at a time: a void is written pending, then
made final without the offsets a run already holds; a publisher that finds a pending void
claiming its offsets waits for it, and withdraws the claim if it stays pending. Every order ends
with each offset either acknowledged and read as a publication, or refused and read as void."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from bson import ObjectId
from pymongo import AsyncMongoClient

from server.config import MongoConfig
from server.position import Position
from server.store import mongo_docs, mongo_writes, schema
from server.store.base import VOID, StoreConflict
from server.store.mongo import MongoStore


@pytest_asyncio.fixture
async def voids(mongo_config: MongoConfig) -> AsyncIterator[Any]:
    """The voids collection, through a client of its own, to stand in for a void's writer."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_config.url)
    yield client[mongo_config.database][schema.VOIDS]
    await client.close()


def pending(offsets: list[int], age: timedelta = timedelta(0)) -> dict[str, Any]:
    """A void of channel c, epoch e1, whose writer is between its writes (or gone)."""
    expire_at = datetime.now(UTC) + timedelta(minutes=5)
    doc = mongo_docs.void("c", "e1", offsets, expire_at, mongo_docs.PENDING)
    doc["_id"] = ObjectId.from_datetime(datetime.now(UTC) - age)
    return doc


async def offsets(store: MongoStore) -> dict[int, bool]:
    """Offset -> whether it reads as void, for offsets 1 to 5 of c."""
    return {o: b is VOID for o, b in await store.span("c", "e1", 1, 5)}


@pytest.mark.asyncio
async def test_a_publisher_waits_for_a_pending_void_and_is_refused_when_it_ends_final(
    mongo_store: MongoStore, voids: Any
) -> None:
    await mongo_store.append("c", "e1", 1, b"1", 100, 60)
    claim = pending([2, 3])
    await voids.insert_one(claim)
    publishing = asyncio.ensure_future(
        mongo_store.append_many("c", "e1", [(2, b"2"), (4, b"4")], 100, 60)
    )
    await asyncio.sleep(0.3)
    assert not publishing.done()  # it waits for the void to settle
    assert await offsets(mongo_store) == {1: False, 4: False}  # 2 is claimed: held back
    await voids.update_one({"_id": claim["_id"]}, {"$set": {"state": mongo_docs.FINAL}})
    refused = await asyncio.wait_for(publishing, 5)
    assert list(refused) == [0] and isinstance(refused[0], StoreConflict)
    assert await offsets(mongo_store) == {1: False, 2: True, 3: True, 4: False}


@pytest.mark.asyncio
async def test_a_void_left_pending_is_withdrawn_from_the_publishers_offsets(
    mongo_store: MongoStore, voids: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mongo_writes, "PENDING_WAIT_S", 0.3)
    claim = pending([2, 3])
    await voids.insert_one(claim)
    assert await mongo_store.append_many("c", "e1", [(1, b"1"), (2, b"2")], 100, 60) == {}
    assert (await voids.find_one({"_id": claim["_id"]}))["offset"] == [3]
    assert await offsets(mongo_store) == {1: False, 2: False}  # 3 still pending: absent
    # The void's writer comes back and makes what it still claims final: 2 stays published.
    await voids.update_one({"_id": claim["_id"]}, {"$set": {"state": mongo_docs.FINAL}})
    assert await offsets(mongo_store) == {1: False, 2: False, 3: True}


@pytest.mark.asyncio
async def test_a_void_made_after_a_run_leaves_the_runs_offsets_to_it(
    mongo_store: MongoStore, voids: Any
) -> None:
    await mongo_store.append_many("c", "e1", [(1, b"1"), (2, b"2")], 100, 60)
    await mongo_store.void("c", "e1", [2, 3], 60)
    [made] = await voids.find({}).to_list(None)
    assert (made["offset"], made["state"]) == ([3], mongo_docs.FINAL)
    assert await offsets(mongo_store) == {1: False, 2: False, 3: True}
    assert await mongo_store.history("c", "e1", None, 10, False) == [(1, b"1"), (2, b"2")]


@pytest.mark.asyncio
async def test_readers_hold_back_a_pending_claim_until_it_is_abandoned(
    mongo_store: MongoStore, voids: Any
) -> None:
    """A run written while a void's writer was between its writes is not shown as published
    until the void settles; a pending void older than ABANDONED no longer holds it back."""
    await mongo_store.append_many("c", "e1", [(1, b"1"), (2, b"2")], 100, 60)
    young = pending([2])
    await voids.insert_one(young)
    assert await offsets(mongo_store) == {1: False}
    assert [o for o, _ in await mongo_store.history("c", "e1", None, 10, True)] == [1]
    await voids.delete_one({"_id": young["_id"]})
    await voids.insert_one(pending([2], age=mongo_docs.ABANDONED + timedelta(seconds=5)))
    assert await offsets(mongo_store) == {1: False, 2: False}
    assert [o for o, _ in await mongo_store.history("c", "e1", None, 10, True)] == [2, 1]


@pytest.mark.asyncio
async def test_position_counts_a_void_beyond_the_newest_run(mongo_store: MongoStore) -> None:
    await mongo_store.append("c", "e1", 1, b"1", 100, 60)
    await mongo_store.void("c", "e1", [2, 3, 7], 60)
    assert await mongo_store.position("c") == Position(7, "e1")


@pytest.mark.asyncio
async def test_a_seed_claims_with_its_reservation_and_gives_the_claim_up_when_beaten(
    mongo_store: MongoStore, voids: Any
) -> None:
    """The claim is written pending with the reservation; a seed another process won gives it
    up at once rather than holding back publications until it is abandoned."""
    await mongo_store.append("c", "e1", 1, b"1", 100, 60)
    settle = await mongo_store.claim("c", "e1", [2, 3], 60)
    [claim] = await voids.find({}).to_list(None)
    assert (claim["offset"], claim["state"]) == ([2, 3], mongo_docs.PENDING)
    assert await mongo_store.position("c") == Position(3, "e1")
    await settle(False)
    assert await voids.count_documents({}) == 0
    assert await mongo_store.append_many("c", "e1", [(2, b"2")], 100, 60) == {}
    assert await offsets(mongo_store) == {1: False, 2: False}


@pytest.mark.asyncio
async def test_final_voids_below_the_floor_are_deleted_by_the_next_write(
    mongo_store: MongoStore, voids: Any
) -> None:
    await mongo_store.append("c", "e1", 1, b"1", 3, 60)
    await mongo_store.void("c", "e1", [2, 3], 60)
    await mongo_store.void("c", "e1", [5], 60)
    await mongo_store.append("c", "e1", 4, b"4", 3, 60)  # floor 1: both voids stay
    assert await voids.count_documents({}) == 2
    await mongo_store.append("c", "e1", 6, b"6", 3, 60)  # floor 3: the void of 2 and 3 goes
    assert [d["offset"] async for d in voids.find({})] == [[5]]
    assert await offsets(mongo_store) == {4: False, 5: True}


@pytest.mark.asyncio
async def test_two_processes_racing_voids_and_publications_agree_on_every_offset(
    mongo_config: MongoConfig,
) -> None:
    """One store appends runs while another voids random offsets of the same range, each on
    its own connections: every offset ends acknowledged and read as a publication, or refused
    and read as void."""
    publisher, voider = MongoStore(mongo_config), MongoStore(mongo_config)
    await publisher.start()
    await voider.start()
    rng = random.Random(19)
    offsets_ = list(range(1, 301))
    try:
        runs = [offsets_[i : i + 10] for i in range(0, 300, 10)]
        claims = [sorted(rng.sample(offsets_, 8)) for _ in range(30)]

        async def publish(run: list[int]) -> dict[int, bool]:
            await asyncio.sleep(rng.random() * 0.05)
            refused = await publisher.append_many(
                "c", "e1", [(o, b"%d" % o) for o in run], 1000, 60
            )
            return {o: i not in refused for i, o in enumerate(run)}

        async def void(claim: list[int]) -> None:
            await asyncio.sleep(rng.random() * 0.05)
            await voider.void("c", "e1", claim, 60)

        await voider.void("c", "e1", [5, 150, 295], 60)  # before any run: surely refused
        results = await asyncio.gather(*map(publish, runs), *map(void, claims))
        acked: dict[int, bool] = {}
        for outcome in results[: len(runs)]:
            acked.update(outcome)  # type: ignore[arg-type]
        kept = dict(await voider.span("c", "e1", 1, 300))
        assert sorted(kept) == offsets_  # every offset settled, none held back
        for o in offsets_:
            assert (kept[o] is not VOID) == acked[o], o
        assert not acked[5] and not acked[150] and not acked[295]
        assert sum(acked.values()) >= 300 - 3 - 30 * 8
    finally:
        await publisher.close()
        await voider.close()
