"""What only the MongoDB store has: schema, indexes, TTL sweeps, concurrent writers, outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient, MongoClient, monitoring

from server.__main__ import prepare_services
from server.config import MongoConfig
from server.position import Position
from server.store import mongo as store_mongo
from server.store import mongo_docs, mongo_reads, schema
from server.store.base import VOID, StoreConflict
from server.store.mongo import MongoStore
from tests.fixtures.mongo import drop_database, fresh_config
from tests.support import make_config


@pytest_asyncio.fixture
async def raw(mongo_config: MongoConfig) -> AsyncIterator[object]:
    """The test's database, through a client of its own, to look behind the store."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_config.url)
    yield client[mongo_config.database]
    await client.close()


@pytest.mark.asyncio
async def test_indexes_and_schema_version(mongo_store: MongoStore, raw: object) -> None:
    db = raw
    users = await db[schema.USERS].index_information()  # type: ignore[index]
    assert users["identity"]["unique"] is True
    sessions = await db[schema.SESSIONS].index_information()  # type: ignore[index]
    assert sessions["expiry"]["expireAfterSeconds"] == 0
    for name in (schema.PUBLICATIONS, schema.VOIDS):
        found = await db[name].index_information()  # type: ignore[index]
        assert found["channel_last"]["key"] == [("channel", 1), ("last", 1)]
        assert found["expiry"]["expireAfterSeconds"] == 0
    meta = await db[schema.META].find_one({"_id": "schema"})  # type: ignore[index]
    assert meta["version"] == schema.VERSION
    await mongo_store.start()  # idempotent: a second start changes nothing
    assert await db[schema.USERS].index_information() == users  # type: ignore[index]


@pytest.mark.asyncio
async def test_body_is_stored_as_binary(mongo_store: MongoStore, raw: object) -> None:
    body = b'{"channel":"c","data":{"$where":1,"x.y":123456789012345678901234567890},"ts":1}'
    await mongo_store.append("c", "e1", 1, body, 10, 60)
    doc = await raw[schema.PUBLICATIONS].find_one({"channel": "c"})  # type: ignore[index]
    assert doc["offset"] == [1] and doc["size"] == 10
    assert type(doc["body"][0]) is bytes and doc["body"] == [body]


@pytest.mark.asyncio
async def test_ttl_sweep_removes_expired_documents(embedded_mongo: str) -> None:
    """The embedded server's sweep runs each second here; reads never wait for it."""
    config = fresh_config(embedded_mongo)
    store = MongoStore(config)
    await store.start()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(config.url)
    db = client[config.database]
    try:
        await store.create_session("u1", 0.2)
        await store.append("c", "e1", 1, b'{"channel":"c","data":1,"ts":1}', 10, 0.2)
        for _ in range(40):
            await asyncio.sleep(0.1)
            left = await db[schema.SESSIONS].count_documents({}) + await db[
                schema.PUBLICATIONS
            ].count_documents({})
            if not left:
                break
        assert left == 0
    finally:
        await client.close()
        await store.close()
        await drop_database(config)


@pytest.mark.asyncio
async def test_retried_and_stale_writes(mongo_store: MongoStore, raw: object) -> None:
    pubs = raw[schema.PUBLICATIONS]  # type: ignore[index]
    await mongo_store.append("c", "e1", 1, b'{"a":1}', 10, 60)
    await mongo_store.append("c", "e1", 1, b'{"a":1}', 10, 60)  # a retry: already there
    assert await pubs.count_documents({"channel": "c"}) == 1
    await mongo_store.append("c", "e2", 1, b'{"b":1}', 10, 60)
    # a slow writer of another process lands an old-epoch publication after the change
    expire_at = (await pubs.find_one({"channel": "c"}))["expire_at"]
    await pubs.insert_many(mongo_docs.runs("c", "e1", [(2, b'{"a":2}')], 10, expire_at))
    await mongo_store.append("c", "e2", 2, b'{"b":2}', 10, 60)
    assert await mongo_store.history("c", "e2", None, 10, False) == [
        (1, b'{"b":1}'),
        (2, b'{"b":2}'),
    ]
    assert await mongo_store.position("c") == Position(2, "e2")


@pytest.mark.asyncio
async def test_two_processes_appending_the_same_offsets_keep_one_each(
    mongo_config: MongoConfig,
) -> None:
    a, b = MongoStore(mongo_config), MongoStore(mongo_config)
    await a.start()
    await b.start()
    try:
        await asyncio.gather(
            *(
                s.append("c", "e1", o, b'{"o":%d}' % o, 100, 60)
                for o in range(1, 51)
                for s in (a, b)
            )
        )
        assert [o for o, _ in await a.history("c", "e1", None, 100, False)] == list(range(1, 51))
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_without_group_commit_same_results(mongo_url: str) -> None:
    config = fresh_config(mongo_url, group_commit_ms=0.0)
    store = MongoStore(config)
    await store.start()
    try:
        await asyncio.gather(*(store.append("c", "e1", o, b"{}", 5, 60) for o in range(1, 21)))
        assert [o for o, _ in await store.history("c", "e1", None, 10, False)] == [
            16,
            17,
            18,
            19,
            20,
        ]
    finally:
        await store.close()
        await drop_database(config)


def test_newer_schema_refuses_start_up_in_one_line(
    mongo_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = fresh_config(mongo_url)
    client: MongoClient[dict[str, object]] = MongoClient(config.url)
    try:
        client[config.database][schema.META].insert_one(
            {"_id": "schema", "version": schema.VERSION + 1}
        )
        cfg = make_config(mongo={"url": config.url, "database": config.database})
        with pytest.raises(SystemExit) as exit_info:
            prepare_services(cfg)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "newer than this Switchboard" in err[0], err
        with pytest.raises(schema.SchemaTooNew):
            asyncio.run(start_and_close(MongoStore(config)))
    finally:
        client.drop_database(config.database)
        client.close()


async def start_and_close(store: MongoStore) -> None:
    try:
        await store.start()
    finally:
        await store.close()


class _Commands(monitoring.CommandListener):
    """Every command the store sends and every reply it gets, to look at what it asked for."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.replies: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.replies.append((event.command_name, event.reply))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def clear(self) -> None:
        self.sent.clear()
        self.replies.clear()

    def deletes(self) -> list[dict[str, Any]]:
        """The filter of every delete statement."""
        return [d["q"] for name, c in self.sent if name == "delete" for d in c["deletes"]]

    def finds(self, collection: str) -> list[dict[str, Any]]:
        """The filter and projection of every find in `collection`."""
        return [
            {"filter": c["filter"], "projection": c.get("projection")}
            for name, c in self.sent
            if name == "find" and c["find"] == collection
        ]

    def returned(self) -> int:
        """How many documents the finds and getMores returned."""
        batches = [r.get("cursor", {}) for name, r in self.replies if name in ("find", "getMore")]
        return sum(len(b.get("firstBatch", b.get("nextBatch", []))) for b in batches)


@pytest_asyncio.fixture
async def heard(
    mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[MongoStore, _Commands]]:
    """A store on a database of its own, every command it sends recorded."""
    commands = _Commands()
    async with _store_heard_by(mongo_url, monkeypatch, commands) as store:
        yield store, commands


@asynccontextmanager
async def _store_heard_by(
    mongo_url: str,
    monkeypatch: pytest.MonkeyPatch,
    listener: monitoring.CommandListener | monitoring.ConnectionPoolListener,
) -> AsyncIterator[MongoStore]:
    """A started store on a database of its own, its client's events told to `listener`."""
    monkeypatch.setattr(
        store_mongo, "AsyncMongoClient", partial(AsyncMongoClient, event_listeners=[listener])
    )
    config = fresh_config(mongo_url)
    store = MongoStore(config)
    await store.start()
    try:
        yield store
    finally:
        await store.close()
        await drop_database(config)


@pytest.mark.asyncio
async def test_trimming_many_channels_deletes_runs_by_id_without_or(
    heard: tuple[MongoStore, _Commands],
) -> None:
    """A group commit spanning channels trims all of them in one delete of the runs' ids: an
    `$or` across channels made the embedded server scan the whole collection on every write
    once histories were full, which stalled publishing (docs/reliability.md, soak)."""
    store, commands = heard
    channels = [f"c{i}" for i in range(4)]
    for offset in range(1, 8):  # a commit each, holding one offset of every channel
        await asyncio.gather(*(store.append(c, "e1", offset, b"{}", 3, 60) for c in channels))
    for c in channels:
        assert [o for o, _ in await store.history(c, "e1", None, 10, False)] == [5, 6, 7]
    deletes = commands.deletes()
    assert deletes, "nothing was trimmed"
    assert all(list(f) == ["_id"] and list(f["_id"]) == ["$in"] for f in deletes)
    pubs = store._db[schema.PUBLICATIONS]
    for c in channels:  # the runs of offsets 1-4 are gone, not only hidden
        left = [d["offset"] async for d in pubs.find({"channel": c})]
        assert sorted(left) == [[5], [6], [7]], left


@pytest.mark.asyncio
async def test_a_run_straddling_the_floor_is_hidden_below_it_then_trimmed(
    mongo_store: MongoStore,
) -> None:
    await asyncio.gather(*(mongo_store.append("c", "e1", o, b"%d" % o, 5, 60) for o in range(1, 5)))
    await asyncio.gather(*(mongo_store.append("c", "e1", o, b"%d" % o, 5, 60) for o in range(5, 9)))
    pubs = mongo_store._db[schema.PUBLICATIONS]
    runs = sorted([d["offset"] async for d in pubs.find({"channel": "c"})])
    assert runs == [[1, 2, 3, 4], [5, 6, 7, 8]]  # the floor is 3: the first run stays
    assert [o for o, _ in await mongo_store.history("c", "e1", None, 10, False)] == [4, 5, 6, 7, 8]
    assert await mongo_store.lowest("c", "e1") == 4
    assert [o for o, _ in await mongo_store.span("c", "e1", 1, 8)] == [4, 5, 6, 7, 8]
    await mongo_store.append("c", "e1", 9, b"9", 5, 60)  # floor 4: now wholly below it
    runs = sorted([d["offset"] async for d in pubs.find({"channel": "c"})])
    assert runs == [[5, 6, 7, 8], [9]]


@pytest.mark.asyncio
async def test_a_new_process_trims_runs_an_earlier_one_left(mongo_config: MongoConfig) -> None:
    first = MongoStore(mongo_config)
    await first.start()
    await asyncio.gather(*(first.append("c", "e1", o, b"{}", 5, 60) for o in range(1, 6)))
    await first.close()
    second = MongoStore(mongo_config)
    await second.start()
    try:
        await asyncio.gather(*(second.append("c", "e1", o, b"{}", 5, 60) for o in range(6, 11)))
        pubs = second._db[schema.PUBLICATIONS]
        assert [d["offset"] async for d in pubs.find({"channel": "c"})] == [[6, 7, 8, 9, 10]]
    finally:
        await second.close()


@pytest.mark.asyncio
async def test_version_1_and_2_documents_are_migrated(
    mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database written by versions 1 (a document per offset) and 2 (runs, interleaved
    across writers, under a unique multikey index) reads the same once migrated, batch by
    batch: runs split into runs of consecutive offsets, voids moved to their own collection
    as final."""
    monkeypatch.setattr(schema, "MIGRATION_BATCH", 2)
    config = fresh_config(mongo_url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(config.url)
    db = client[config.database]
    pubs = db[schema.PUBLICATIONS]
    expire_at = datetime.now(UTC) + timedelta(minutes=5)
    old = {"channel": "c", "epoch": "e1", "expire_at": expire_at}
    await db[schema.META].insert_one({"_id": "schema", "version": 2})
    await db[schema.CHANNELS].insert_one({"_id": "c", "epoch": "e1"})
    await pubs.create_index([("channel", 1), ("offset", 1)], unique=True, name="channel_offset")
    await pubs.insert_many(
        [dict(old, offset=o, body=b"%d" % o) for o in (1, 2, 4)]  # version 1
        + [dict(old, offset=3, void=True)]
        + [dict(old, offset=[5, 7], body=[b"5", b"7"], size=100)]  # version 2
        + [dict(old, offset=[6, 8], body=[b"6", b"8"], size=100)]
        + [dict(old, offset=[9, 10], void=True)]
    )
    store = MongoStore(config)
    try:
        for _ in range(2):  # a second start finds nothing to migrate
            await store.start()
            assert "channel_offset" not in await pubs.index_information()
            assert (await db[schema.META].find_one({"_id": "schema"}))["version"] == 3
            runs = [d["offset"] async for d in pubs.find({}).sort("last", 1)]
            assert runs == [[1], [2], [4], [5], [6], [7], [8]]
            voids = [(d["offset"], d["state"]) async for d in db[schema.VOIDS].find({})]
            assert sorted(voids) == [([3], "final"), ([9, 10], "final")]
            assert await store.position("c") == Position(10, "e1")
            assert await store.span("c", "e1", 1, 10) == [
                (o, VOID if o in (3, 9, 10) else b"%d" % o) for o in range(1, 11)
            ]
            assert [o for o, _ in await store.history("c", "e1", 3, 3, False)] == [4, 5, 6]
            await store.close()
        await store.start()
        with pytest.raises(StoreConflict):
            await store.append("c", "e1", 9, b"9", 100, 60)
        assert (await store.span("c", "e1", 9, 9)) == [(9, VOID)]
        await store.append("c", "e1", 11, b"11", 3, 60)  # floor 8: the old documents go too
        assert await store.history("c", "e1", None, 10, False) == [(11, b"11")]
        left = sorted([d["offset"] async for d in pubs.find({})])
        assert left == [[9], [11]]  # the refused run of 9 is trimmed with the others later
    finally:
        await store.close()
        await client.drop_database(config.database)
        await client.close()


@pytest.mark.asyncio
async def test_the_store_opens_at_most_its_pool_of_connections(embedded_mongo: str) -> None:
    """Client sockets leave a reserve of descriptors: the store's pool must fit in it."""
    store = MongoStore(fresh_config(embedded_mongo))
    await store.start()
    try:
        reads = [store.history(f"c{i}", "e", None, 10, False) for i in range(200)]
        await asyncio.gather(*reads)
        client = store._db.client
        assert client.options.pool_options.max_pool_size == store_mongo.POOL_SIZE <= 50
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_a_run_longer_than_a_group_commit_is_stored_in_two(mongo_store: MongoStore) -> None:
    """Group commit takes at most 2,000 items a batch: a longer run is split across two
    commits, two documents, and reads back whole."""
    run = [(o, b"%d" % o) for o in range(1, 2501)]
    assert await mongo_store.append_many("c", "e1", run, 3000, 60) == {}
    assert await mongo_store.history("c", "e1", None, 3000, False) == run
    docs = mongo_store._db[schema.PUBLICATIONS].find({"channel": "c"}, {"offset": 1})
    assert sorted([len(d["offset"]) async for d in docs]) == [500, 2000]


@pytest.mark.asyncio
async def test_a_page_of_history_reads_the_bodies_of_its_runs_only(
    heard: tuple[MongoStore, _Commands],
) -> None:
    store, commands = heard
    for first in range(1, 51, 10):  # five runs of ten
        run = [(o, b"%d" % o) for o in range(first, first + 10)]
        assert await store.append_many("c", "e1", run, 100, 60) == {}
    commands.clear()
    page = await store.history("c", "e1", None, 3, True)
    assert page == [(50, b"50"), (49, b"49"), (48, b"48")]
    offsets, bodies = commands.finds(schema.PUBLICATIONS)
    assert "body" not in offsets["projection"]
    assert len(bodies["filter"]["_id"]["$in"]) == 1  # the newest run alone


@pytest.mark.asyncio
async def test_a_page_of_history_stops_reading_runs_once_it_is_whole(
    heard: tuple[MongoStore, _Commands],
) -> None:
    """Fifty runs of one publication (a quiet channel, a commit each): a page of three reads
    about four documents, not fifty, either way."""
    store, commands = heard
    for o in range(1, 51):
        await store.append("c", "e1", o, b"%d" % o, 100, 60)
    for reverse, since, want in (
        (True, None, [50, 49, 48]),
        (False, None, [1, 2, 3]),
        (False, 20, [21, 22, 23]),
        (True, 20, [50, 49, 48]),
    ):
        commands.clear()
        page = await store.history("c", "e1", since, 3, reverse)
        assert [o for o, _ in page] == want
        # the newest run (forward only), a batch of limit + 1, the page's runs with bodies
        assert commands.returned() <= 1 + (3 + 1) + 3, (reverse, since, commands.returned())


@pytest.mark.asyncio
async def test_pages_of_interleaved_runs_and_of_a_channel_ending_in_a_void(
    mongo_store: MongoStore,
) -> None:
    """Two writers' runs interleave (1, 3, 5 and 2, 4, 6); a void as the newest document sets
    no floor, so a forward page reads the channel whole."""
    assert await mongo_store.append_many("c", "e1", [(1, b"1"), (3, b"3"), (5, b"5")], 9, 60) == {}
    assert await mongo_store.append_many("c", "e1", [(2, b"2"), (4, b"4"), (6, b"6")], 9, 60) == {}
    history = mongo_store.history
    assert [o for o, _ in await history("c", "e1", None, 2, True)] == [6, 5]
    assert [o for o, _ in await history("c", "e1", None, 2, False)] == [1, 2]
    assert [o for o, _ in await history("c", "e1", 2, 3, False)] == [3, 4, 5]
    await mongo_store.void("c", "e1", [7, 8], 60)
    assert [o for o, _ in await history("c", "e1", None, 3, False)] == [1, 2, 3]
    assert [o for o, _ in await history("c", "e1", None, 3, True)] == [6, 5, 4]
    await mongo_store.append_many("c", "e1", [(9, b"9"), (10, b"10"), (11, b"11")], 9, 60)
    assert [o for o, _ in await history("c", "e1", None, 3, False)] == [3, 4, 5]  # floor 2


@pytest.mark.asyncio
async def test_a_complete_span_serves_later_readers_of_its_range_for_a_while(
    heard: tuple[MongoStore, _Commands], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart's subscribers of a channel arrive over seconds: a span read that found every
    offset of its range is kept for them; one with a hole is read again (it may be filled)."""
    store, commands = heard
    assert await store.append_many("c", "e1", [(o, b"%d" % o) for o in (1, 2, 3)], 100, 60) == {}
    await store.append("d", "e1", 1, b"1", 100, 60)
    await store.append("d", "e1", 3, b"3", 100, 60)

    commands.clear()
    assert [o for o, _ in await store.span("c", "e1", 0, 3)] == [1, 2, 3]
    assert len(commands.finds(schema.PUBLICATIONS)) == 1
    commands.clear()
    assert await store.span("c", "e1", 1, 3) == [(1, b"1"), (2, b"2"), (3, b"3")]
    assert await store.span("c", "e1", 2, 3) == [(2, b"2"), (3, b"3")]
    assert commands.finds(schema.PUBLICATIONS) == []  # kept
    await store.span("c", "e1", 0, 2)  # another range: read
    assert len(commands.finds(schema.PUBLICATIONS)) == 1

    commands.clear()
    assert [o for o, _ in await store.span("d", "e1", 0, 3)] == [1, 3]
    await store.append("d", "e1", 2, b"2", 100, 60)
    assert [o for o, _ in await store.span("d", "e1", 0, 3)] == [1, 2, 3]
    assert len(commands.finds(schema.PUBLICATIONS)) == 2  # the one with a hole was not kept

    monkeypatch.setattr(mongo_reads, "SPAN_KEEP_S", 0.0)  # kept no time at all
    commands.clear()
    assert [o for o, _ in await store.span("c", "e1", 0, 1)] == [1]
    assert [o for o, _ in await store.span("c", "e1", 0, 1)] == [1]
    assert len(commands.finds(schema.PUBLICATIONS)) == 2


@pytest.mark.asyncio
async def test_the_store_opens_its_pool_before_clients_come(
    mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections opened under load take hundreds of milliseconds each: start opens them."""
    pool = _Pool()
    async with _store_heard_by(mongo_url, monkeypatch, pool):
        assert pool.opened == store_mongo.POOL_SIZE


class _Pool(monitoring.ConnectionPoolListener):
    """Counts the connections a client opens."""

    def __init__(self) -> None:
        self.opened = 0

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        self.opened += 1

    def pool_created(self, event: Any) -> None: ...
    def pool_ready(self, event: Any) -> None: ...
    def pool_cleared(self, event: Any) -> None: ...
    def pool_closed(self, event: Any) -> None: ...
    def connection_created(self, event: Any) -> None: ...
    def connection_closed(self, event: Any) -> None: ...
    def connection_check_out_started(self, event: Any) -> None: ...
    def connection_check_out_failed(self, event: Any) -> None: ...
    def connection_checked_out(self, event: Any) -> None: ...
    def connection_checked_in(self, event: Any) -> None: ...


@pytest.mark.asyncio
async def test_positions_of_many_channels_read_at_once_share_their_reads(
    heard: tuple[MongoStore, _Commands],
) -> None:
    """After a restart every channel is seeded at once: their channel documents and voids are
    read in one query each per batch, not one per channel."""
    store, commands = heard
    names = [f"c{i}" for i in range(20)]
    for name in names:
        await store.append(name, "e1", 1, b"1", 100, 60)
    await store.void("c3", "e1", [2, 3], 60)
    commands.clear()
    positions = await asyncio.gather(*(store.position(n) for n in names))
    assert positions == [Position(3 if n == "c3" else 1, "e1") for n in names]
    assert len(commands.finds(schema.CHANNELS)) <= 2  # the first alone, then the rest
    assert len(commands.finds(schema.VOIDS)) <= 2
    assert len(commands.finds(schema.PUBLICATIONS)) == len(names)  # each channel's newest run


@pytest.mark.asyncio
async def test_kept_spans_are_dropped_once_expired(
    mongo_store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spans kept hold bodies: each one kept drops those expired, so a process keeps only the
    last SPAN_KEEP_S of them, however many channels recovered before."""
    monkeypatch.setattr(mongo_reads, "SPAN_KEEP_S", 0.05)
    for name in ("a", "b", "c"):
        await mongo_store.append(name, "e1", 1, b"1", 100, 60)
    await mongo_store.span("a", "e1", 0, 1)
    await mongo_store.span("b", "e1", 0, 1)
    assert set(mongo_store._reads._complete) == {("a", "e1", 1), ("b", "e1", 1)}
    await asyncio.sleep(0.06)
    await mongo_store.span("c", "e1", 0, 1)
    assert set(mongo_store._reads._complete) == {("c", "e1", 1)}
