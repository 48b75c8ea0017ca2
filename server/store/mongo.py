"""The MongoDB store, on PyMongo's native async client, used from the IOLoop.

Publications are kept as their JSON bodies in BSON binary, so whatever a client publishes (keys
with `$` or `.`, integers beyond int64) comes back byte for byte. Appends are group-committed
(`[mongo] group_commit_ms`). Every driver error becomes StoreUnavailable: the client fails fast
(2 s server selection) and reconnects by itself, so an outage costs replies, never the process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from server.config import MongoConfig
from server.position import Position
from server.store import schema
from server.store.base import VOID, Session, Store, StoreConflict, StoreUnavailable, User
from server.store.commit import GroupCommit, Refused

log = logging.getLogger("switchboard.store")

#: Channels whose epoch and trim floor this process remembers (least recently written go).
CHANNEL_CACHE = 10_000
DUPLICATE_KEY = 11000


@dataclass(frozen=True, slots=True)
class Append:
    channel: str
    epoch: str
    offset: int
    body: bytes
    history_size: int
    expire_at: datetime


@dataclass(slots=True)
class _Kept:
    """What this process knows of a channel: its epoch and the offset it is trimmed up to."""

    epoch: str
    recorded: asyncio.Future[None]  # the epoch is in the channels collection
    floor: int = 0


def write_concern(config: MongoConfig) -> dict[str, Any]:
    """The client's write concern: `[mongo] write_concern`, or by default `majority` when the
    URL names a replica set (an acknowledged publication then survives a primary's failover),
    else the server's default (w=1). Writes are retried once by the driver on a failover
    (retryable writes): the server recognises the retry and applies the write once.
    """
    wc = config.write_concern
    if not wc:
        query = parse_qs(urlsplit(config.url).query)
        wc = "majority" if any(k.lower() == "replicaset" for k in query) else ""
    if not wc:
        return {}
    return {"w": "majority" if wc == "majority" else int(wc)}


def _when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _reason(exc: PyMongoError) -> str:
    """The first line of a driver error, without the topology dump of a selection timeout."""
    text = str(exc).split(", Timeout:")[0].split("\n")[0]
    return text[:200] or type(exc).__name__


@contextmanager
def _outage(what: str) -> Iterator[None]:
    try:
        yield
    except PyMongoError as exc:
        raise StoreUnavailable(f"MongoDB {what} failed: {_reason(exc)}") from exc


class MongoStore(Store):
    def __init__(self, config: MongoConfig) -> None:
        self.config = config
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._schema_ok = False
        self._schema_lock = asyncio.Lock()
        self._channels: OrderedDict[str, _Kept] = OrderedDict()
        #: Span reads in flight: (channel, epoch, upto) -> (since, the read).
        self._spans: dict[tuple[str, str, int], tuple[int, asyncio.Future[Any]]] = {}
        self._commit = (
            GroupCommit(self._write, config.group_commit_ms / 1000)
            if config.group_commit_ms > 0
            else None
        )

    @property
    def _db(self) -> AsyncDatabase[dict[str, Any]]:
        if self._client is None:
            self._client = AsyncMongoClient(
                self.config.url,
                serverSelectionTimeoutMS=2000,
                connectTimeoutMS=2000,
                socketTimeoutMS=10000,
                tz_aware=True,
                appname="switchboard",
                retryWrites=True,
                **write_concern(self.config),
            )
        return self._client[self.config.database]

    async def start(self) -> None:
        """Make the schema now if MongoDB is there; otherwise on first use, once it is back."""
        try:
            await self._ready()
        except schema.SchemaTooNew:
            raise
        except StoreUnavailable as exc:
            log.warning("store not ready at start-up, will retry on use: %s", exc)

    async def close(self) -> None:
        if self._commit is not None:
            await self._commit.flush()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _ready(self) -> AsyncDatabase[dict[str, Any]]:
        db = self._db
        if not self._schema_ok:
            async with self._schema_lock:
                if not self._schema_ok:
                    with _outage("schema set-up"):
                        await schema.ensure(db)
                    self._schema_ok = True
        return db

    async def check(self) -> None:
        db = await self._ready()
        with _outage("ping"):
            await db.command("ping")

    # -- history ------------------------------------------------------------------------------

    async def append(
        self, channel: str, epoch: str, offset: int, body: bytes, history_size: int, ttl_s: float
    ) -> None:
        item = Append(channel, epoch, offset, body, history_size, _when(time.time() + ttl_s))
        if self._commit is None:
            refused = await self._write([item])
            if refused:
                raise refused[0]
        else:
            await self._commit.submit(item)

    async def _write(self, batch: list[Append]) -> Refused:
        """Write a batch: per channel, drop older epochs, insert the newest, trim to size.

        Returns the items refused because their offset was made void first.
        """
        db = await self._ready()
        by_channel: dict[str, list[Append]] = {}
        for item in batch:
            by_channel.setdefault(item.channel, []).append(item)
        docs: list[dict[str, Any]] = []
        kept: dict[str, _Kept] = {}
        refused: Refused = {}
        for channel, items in by_channel.items():
            newest = max(items, key=lambda i: i.offset)
            k = kept[channel] = await self._kept(db, channel, newest.epoch)
            k.floor = max(k.floor, newest.offset - newest.history_size)
            docs += [
                {
                    "channel": i.channel,
                    "epoch": i.epoch,
                    "offset": i.offset,
                    "body": i.body,
                    "expire_at": i.expire_at,
                }
                for i in items
                if i.epoch == newest.epoch and i.offset > k.floor
            ]
        if docs:
            try:
                voided = await self._insert(db, docs)
            finally:
                self._written(by_channel)
            for i, item in enumerate(batch):
                if (item.channel, item.offset) in voided:
                    refused[i] = StoreConflict(
                        f"offset {item.offset} of {item.channel} was made void before it was stored"
                    )
        # Trim after inserting, to the highest floor known by now: a concurrent write that
        # trimmed while ours was in flight leaves nothing of ours below its floor.
        trims = [{"channel": c, "offset": {"$lte": k.floor}} for c, k in kept.items() if k.floor]
        if trims:
            with _outage("trimming history"):
                await db[schema.PUBLICATIONS].delete_many(
                    trims[0] if len(trims) == 1 else {"$or": trims}
                )
        return refused

    async def _insert(
        self, db: AsyncDatabase[dict[str, Any]], docs: list[dict[str, Any]]
    ) -> set[tuple[str, int]]:
        """Insert; an older epoch's leftover is replaced, a retried one kept.

        Returns the (channel, offset) of publications refused because a void holds the offset.
        """
        pubs = db[schema.PUBLICATIONS]
        with _outage("storing publications"):
            try:
                await pubs.insert_many(docs, ordered=False)
                return set()
            except BulkWriteError as exc:
                dups = _duplicates(exc, docs)
            by_epoch: dict[tuple[str, str], list[int]] = {}
            for doc in dups:
                by_epoch.setdefault((doc["channel"], doc["epoch"]), []).append(doc["offset"])
            for (channel, epoch), offsets in by_epoch.items():  # one round trip per channel
                await pubs.delete_many(
                    {"channel": channel, "offset": {"$in": offsets}, "epoch": {"$ne": epoch}}
                )
            try:
                await pubs.insert_many(dups, ordered=False)
                return set()
            except BulkWriteError as exc:
                same = _duplicates(exc, dups)  # now the same epoch's: stored, or a void
            mine = [d for d in same if not d.get("void")]
            if not mine:
                return set()
            found = pubs.find(
                {
                    "$or": [{"channel": d["channel"], "offset": d["offset"]} for d in mine],
                    "void": True,
                },
                {"_id": 0, "channel": 1, "offset": 1},
            )
            return {(d["channel"], d["offset"]) async for d in found}

    async def _kept(self, db: AsyncDatabase[dict[str, Any]], channel: str, epoch: str) -> _Kept:
        """The channel's state under `epoch`, shared by concurrent writes, once recorded."""
        k = self._channels.get(channel)
        if k is None or k.epoch != epoch:
            recorded = asyncio.ensure_future(self._record_epoch(db, channel, epoch))
            k = self._channels[channel] = _Kept(epoch, recorded)
            if len(self._channels) > CHANNEL_CACHE:
                self._channels.popitem(last=False)
        else:
            self._channels.move_to_end(channel)
        try:
            await asyncio.shield(k.recorded)
        except StoreUnavailable:
            if self._channels.get(channel) is k:
                del self._channels[channel]  # the next write tries again
            raise
        return k

    async def _record_epoch(
        self, db: AsyncDatabase[dict[str, Any]], channel: str, epoch: str
    ) -> None:
        """Record the channel's epoch; a new one drops what the channel held under the old."""
        channels = db[schema.CHANNELS]
        with _outage("recording the epoch"):
            try:
                before = await channels.find_one_and_update(
                    {"_id": channel}, {"$set": {"epoch": epoch}}, upsert=True
                )
            except DuplicateKeyError:  # a first upsert of the same channel by another process
                before = await channels.find_one_and_update(
                    {"_id": channel}, {"$set": {"epoch": epoch}}, upsert=True
                )
            if before is not None and before["epoch"] != epoch:
                await db[schema.PUBLICATIONS].delete_many(
                    {"channel": channel, "epoch": {"$ne": epoch}}
                )

    async def history(
        self, channel: str, epoch: str, since: int | None, limit: int, reverse: bool
    ) -> list[tuple[int, bytes]]:
        db = await self._ready()
        query: dict[str, Any] = {
            "channel": channel,
            "epoch": epoch,
            "expire_at": {"$gt": _when(time.time())},
            "void": {"$ne": True},
        }
        if since is not None:
            query["offset"] = {"$gt": since}
        with _outage("reading history"):
            cursor = (
                db[schema.PUBLICATIONS]
                .find(query, {"_id": 0, "offset": 1, "body": 1})
                .sort("offset", -1 if reverse else 1)
                .limit(limit)
            )
            return [(d["offset"], d["body"]) async for d in cursor]

    async def span(
        self, channel: str, epoch: str, since: int, upto: int
    ) -> list[tuple[int, bytes | None]]:
        """Shared by concurrent readers of the same channel up to the same offset: a restart's
        reconnecting subscribers of a channel all recover the same range, and one read serves
        them. A reader joins a read only when no write to the channel finished after that read
        began, so what it gets is what a read of its own would have found."""
        key = (channel, epoch, upto)
        shared = self._spans.get(key)
        if shared is not None and shared[0] <= since:
            kept = await asyncio.shield(shared[1])
            return [entry for entry in kept if entry[0] >= since]
        read = asyncio.ensure_future(self._read_span(channel, epoch, since, upto))
        self._spans[key] = (since, read)
        read.add_done_callback(lambda _: self._forget_span(key, read))
        return await asyncio.shield(read)

    def _forget_span(self, key: tuple[str, str, int], read: asyncio.Future[Any]) -> None:
        shared = self._spans.get(key)
        if shared is not None and shared[1] is read:
            del self._spans[key]

    def _written(self, channels: Iterable[str]) -> None:
        """Writes to `channels` finished: reads begun before them take no new readers."""
        if self._spans:
            written = set(channels)
            for key in [k for k in self._spans if k[0] in written]:
                del self._spans[key]

    async def _read_span(
        self, channel: str, epoch: str, since: int, upto: int
    ) -> list[tuple[int, bytes | None]]:
        db = await self._ready()
        query = {
            "channel": channel,
            "epoch": epoch,
            "offset": {"$gte": since, "$lte": upto},
            "expire_at": {"$gt": _when(time.time())},
        }
        with _outage("reading history"):
            cursor = db[schema.PUBLICATIONS].find(
                query, {"_id": 0, "offset": 1, "body": 1, "void": 1}
            )
            kept = [(d["offset"], VOID if d.get("void") else d["body"]) async for d in cursor]
        return sorted(kept, key=lambda entry: entry[0])

    async def lowest(self, channel: str, epoch: str) -> int | None:
        db = await self._ready()
        query = {"channel": channel, "epoch": epoch, "expire_at": {"$gt": _when(time.time())}}
        with _outage("reading history"):
            doc = await db[schema.PUBLICATIONS].find_one(
                query, {"_id": 0, "offset": 1}, sort=[("offset", 1)]
            )
        return None if doc is None else int(doc["offset"])

    async def void(self, channel: str, epoch: str, offsets: list[int], ttl_s: float) -> None:
        if not offsets:
            return
        db = await self._ready()
        await self._kept(db, channel, epoch)
        expire_at = _when(time.time() + ttl_s)
        docs = [
            {"channel": channel, "epoch": epoch, "offset": o, "void": True, "expire_at": expire_at}
            for o in offsets
        ]
        try:
            await self._insert(db, docs)
        finally:
            self._written((channel,))

    async def reserve(self, channel: str, epoch: str, offset: int) -> None:
        db = await self._ready()
        with _outage("reserving offsets"):
            await db[schema.CHANNELS].update_one(
                {"_id": channel, "epoch": epoch}, {"$max": {"reserved": offset}}
            )

    async def position(self, channel: str) -> Position | None:
        db = await self._ready()
        with _outage("reading the position"):
            current = await db[schema.CHANNELS].find_one({"_id": channel})
            if current is None:
                return None
            newest = await db[schema.PUBLICATIONS].find_one(
                {
                    "channel": channel,
                    "epoch": current["epoch"],
                    "expire_at": {"$gt": _when(time.time())},
                },
                {"_id": 0, "offset": 1},
                sort=[("offset", -1)],
            )
        if newest is None:
            return None
        return Position(max(newest["offset"], current.get("reserved", 0)), current["epoch"])

    # -- users and sessions -------------------------------------------------------------------

    async def upsert_user(self, provider: str, subject: str, name: str, avatar: str | None) -> User:
        db = await self._ready()
        users = db[schema.USERS]
        identity = {"provider": provider, "subject": subject}
        update = {
            "$set": {"name": name, "avatar": avatar},
            "$setOnInsert": {"_id": secrets.token_hex(12)},
        }
        with _outage("saving the user"):
            for _ in range(3):  # racing first logins of one identity: the losers find it
                try:
                    doc = await users.find_one_and_update(
                        identity, update, upsert=True, return_document=ReturnDocument.AFTER
                    )
                except DuplicateKeyError:
                    continue
                # secantusdb sometimes answers a racing upsert without the document
                doc = doc or await users.find_one(identity)
                if doc is not None:
                    return _user(doc)
        raise StoreUnavailable(f"MongoDB saving the user failed: {provider}/{subject} raced")

    async def get_user(self, user_id: str) -> User | None:
        db = await self._ready()
        with _outage("reading the user"):
            doc = await db[schema.USERS].find_one({"_id": user_id})
        return None if doc is None else _user(doc)

    async def create_session(self, user_id: str, ttl_s: float) -> Session:
        db = await self._ready()
        session = Session(secrets.token_urlsafe(32), user_id, time.time() + ttl_s)
        with _outage("creating the session"):
            await db[schema.SESSIONS].insert_one(
                {"_id": session.id, "user_id": user_id, "expires_at": _when(session.expires_at)}
            )
        return session

    async def get_session(self, session_id: str) -> Session | None:
        db = await self._ready()
        with _outage("reading the session"):  # the TTL sweep lags: filter on expiry too
            doc = await db[schema.SESSIONS].find_one(
                {"_id": session_id, "expires_at": {"$gt": _when(time.time())}}
            )
        return None if doc is None else _session(doc)

    async def delete_session(self, session_id: str) -> Session | None:
        db = await self._ready()
        with _outage("deleting the session"):
            doc = await db[schema.SESSIONS].find_one_and_delete({"_id": session_id})
        return None if doc is None else _session(doc)


def _duplicates(exc: BulkWriteError, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents refused as duplicate keys; any other write error is re-raised."""
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise exc
    return [docs[e["index"]] for e in errors]


def _user(doc: dict[str, Any]) -> User:
    return User(doc["_id"], doc["provider"], doc["subject"], doc["name"], doc.get("avatar"))


def _session(doc: dict[str, Any]) -> Session:
    return Session(doc["_id"], doc["user_id"], doc["expires_at"].timestamp())


async def prepare_store(config: MongoConfig) -> None:
    """Make the schema once per machine before processes fork; raise SchemaTooNew if newer."""
    store = MongoStore(config)
    try:
        await store.start()
    finally:
        await store.close()
