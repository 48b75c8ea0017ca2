"""The MongoDB schema: collections, their indexes and the schema version, made idempotently.

Every query the store makes is served by one of these indexes; the embedded server scans a
collection for a query on an unindexed field, which is slow enough to matter at a few thousand
documents.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from server.store.base import StoreUnavailable

#: The schema this code writes. Raise it (and migrate in `ensure`) when documents change shape.
#: 2: a publications document holds a run of offsets (mongo_docs); version 1 documents, one
#: offset each, are read as they are, so there is nothing to migrate. A version 1 process
#: cannot read runs: stop those before starting this version on their database.
VERSION = 2

USERS = "users"
SESSIONS = "sessions"
PUBLICATIONS = "publications"
CHANNELS = "channels"  # the current epoch of each channel that keeps history
META = "meta"

INDEXES: dict[str, list[IndexModel]] = {
    USERS: [
        IndexModel([("provider", ASCENDING), ("subject", ASCENDING)], unique=True, name="identity")
    ],
    SESSIONS: [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")],
    PUBLICATIONS: [
        IndexModel(
            [("channel", ASCENDING), ("offset", ASCENDING)], unique=True, name="channel_offset"
        ),
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
    for name, indexes in INDEXES.items():
        await db[name].create_indexes(indexes)
    await db[META].update_one({"_id": "schema"}, {"$max": {"version": VERSION}}, upsert=True)
