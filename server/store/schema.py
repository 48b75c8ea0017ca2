"""The MongoDB schema: collections, their indexes and the schema version, made idempotently.

Every query the store makes is served by one of these indexes; the embedded server scans a
collection for a query on an unindexed field, which is slow enough to matter at a few thousand
documents.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from server.store import mongo_docs
from server.store.base import StoreUnavailable
from server.store.mongo_io import insert_once

#: The schema this code writes. Raise it (and migrate in `ensure`) when documents change shape.
#: 2: a publications document holds a run of offsets (mongo_docs).
#: 3: runs hold consecutive offsets under a scalar index, voids have a collection of their
#: own; `ensure` migrates version 1 and 2 documents. Stop processes of an older version
#: before starting this one on their database: they cannot read what it writes.
VERSION = 3

#: Documents of an older schema rewritten per round trip when migrating.
MIGRATION_BATCH = 500

USERS = "users"
SESSIONS = "sessions"
PUBLICATIONS = "publications"
VOIDS = "voids"
CHANNELS = "channels"  # the current epoch of each channel that keeps history
META = "meta"

INDEXES: dict[str, list[IndexModel]] = {
    USERS: [
        IndexModel([("provider", ASCENDING), ("subject", ASCENDING)], unique=True, name="identity")
    ],
    SESSIONS: [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")],
    PUBLICATIONS: [
        IndexModel([("channel", ASCENDING), ("last", ASCENDING)], name="channel_last"),
        IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0, name="expiry"),
    ],
    VOIDS: [
        IndexModel([("channel", ASCENDING), ("last", ASCENDING)], name="channel_last"),
        IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0, name="expiry"),
    ],
}


class SchemaTooNew(StoreUnavailable):
    """The database was written by a newer Switchboard: refuse rather than corrupt it."""


async def ensure(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Create collections' indexes and record the schema version; refuse a newer schema."""
    doc = await db[META].find_one({"_id": "schema"})
    found = int(doc["version"]) if doc else 0
    if found > VERSION:
        raise SchemaTooNew(
            f"database {db.name!r} has schema version {found}, newer than this Switchboard's "
            f"{VERSION}: upgrade Switchboard, or set [mongo] database to another database"
        )
    if 0 < found < 3:
        await _migrate_to_3(db)
    for name, indexes in INDEXES.items():
        await db[name].create_indexes(indexes)
    await db[META].update_one({"_id": "schema"}, {"$max": {"version": VERSION}}, upsert=True)


async def _migrate_to_3(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Rewrite version 1 and 2 documents: runs into runs of consecutive offsets, voids into
    their own collection (as final), a batch of documents a round trip or two; the multikey
    index goes first, as it would refuse the new runs. Idempotent, so a migration cut short,
    or run by two processes at once, ends the same."""
    pubs, voids = db[PUBLICATIONS], db[VOIDS]
    if "channel_offset" in await pubs.index_information():
        await pubs.drop_index("channel_offset")
    old = pubs.find({"last": {"$exists": False}}).batch_size(MIGRATION_BATCH)
    while batch := await old.to_list(MIGRATION_BATCH):
        runs: list[dict[str, Any]] = []
        made_void: list[dict[str, Any]] = []
        for doc in batch:
            found = doc["offset"] if isinstance(doc["offset"], list) else [doc["offset"]]
            if doc.get("void"):
                void = mongo_docs.void(
                    doc["channel"], doc["epoch"], found, doc["expire_at"], mongo_docs.FINAL
                )
                made_void.append(dict(void, _id=doc["_id"]))
            else:
                bodies = doc["body"] if isinstance(doc["body"], list) else [doc["body"]]
                size = doc.get("size", max(found))  # version 1 set no floor
                items = sorted(zip(found, (bytes(b) for b in bodies), strict=True))
                runs += mongo_docs.runs(doc["channel"], doc["epoch"], items, size, doc["expire_at"])
        for coll, docs in ((pubs, runs), (voids, made_void)):
            if docs:
                await insert_once(coll, docs)
        await pubs.delete_many({"_id": {"$in": [doc["_id"] for doc in batch]}})
