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
    their own collection (as final), and drop the multikey index. Idempotent, so a migration
    cut short, or run by two processes at once, ends the same."""
    pubs, voids = db[PUBLICATIONS], db[VOIDS]
    if "channel_offset" in await pubs.index_information():  # it would refuse the new runs
        await pubs.drop_index("channel_offset")
    async for doc in pubs.find({"last": {"$exists": False}}):
        found = mongo_docs.offsets(doc)
        if doc.get("void"):
            new = [
                dict(
                    mongo_docs.void(
                        doc["channel"], doc["epoch"], found, doc["expire_at"], mongo_docs.FINAL
                    ),
                    _id=doc["_id"],
                )
            ]
            await insert_once(voids, new)
        else:
            bodies = doc["body"] if isinstance(doc["body"], list) else [doc["body"]]
            size = doc.get("size", max(found))  # version 1 set no floor
            items = sorted(zip(found, (bytes(b) for b in bodies), strict=True))
            new = mongo_docs.runs(doc["channel"], doc["epoch"], items, size, doc["expire_at"])
            await insert_once(pubs, new)
        await pubs.delete_one({"_id": doc["_id"]})
