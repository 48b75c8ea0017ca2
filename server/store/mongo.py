"""The MongoDB store, on PyMongo's native async client, used from the IOLoop.

Publications are kept as their JSON bodies in BSON binary, so whatever a client publishes (keys
with `$` or `.`, integers beyond int64) comes back byte for byte. Every driver error becomes
StoreUnavailable: the client fails fast (2 s server selection) and reconnects by itself, so an
outage costs replies, never the process.

This module owns the client and the schema; the work is done by its parts: mongo_writes (appends,
voids, reservations), mongo_reads (history, spans, positions) and mongo_users (users, sessions).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymongo import AsyncMongoClient

from server.config import MongoConfig
from server.position import Position
from server.store import schema
from server.store.base import Refused, Session, Settle, Store, StoreUnavailable, User
from server.store.mongo_io import Db, outage
from server.store.mongo_reads import MongoReads
from server.store.mongo_users import MongoUsers
from server.store.mongo_writes import MongoWrites

log = logging.getLogger("switchboard.store")
#: Connections to MongoDB at most. Each is a file descriptor out of the reserve that client
#: sockets leave (server/process/admission.py, FD_RESERVE: 100 at the least); pymongo's own
#: default of 100 could take all of it, and did when 19,900 clients recovered at once
#: (accept then failed with EMFILE). Group commit and shared history reads need few.
POOL_SIZE = 32


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


class MongoStore(Store):
    def __init__(self, config: MongoConfig) -> None:
        self.config = config
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._schema_ok = False
        self._schema_lock = asyncio.Lock()
        self._reads = MongoReads(self._ready)
        self._writes = MongoWrites(self._ready, config.group_commit_ms, self._reads.written)
        self._users = MongoUsers(self._ready)

    @property
    def _db(self) -> Db:
        if self._client is None:
            self._client = AsyncMongoClient(
                self.config.url,
                serverSelectionTimeoutMS=2000,
                connectTimeoutMS=2000,
                socketTimeoutMS=10000,
                tz_aware=True,
                appname="switchboard",
                retryWrites=True,
                maxPoolSize=POOL_SIZE,
                minPoolSize=POOL_SIZE,  # kept open, and reopened after an outage
                maxConnecting=POOL_SIZE,
                **write_concern(self.config),
            )
        return self._client[self.config.database]

    async def start(self) -> None:
        """Make the schema now if MongoDB is there, otherwise on first use, once it is back;
        and open the pool's connections before clients come. A connection opened under load
        takes a few hundred milliseconds (pymongo's handshake takes many turns of a busy event
        loop) and only two open at a time by default: after a restart, the first store
        operations of 19,900 reconnecting clients waited seconds for them."""
        try:
            db = await self._ready()
            with outage("opening connections"):
                await asyncio.gather(*(db.command("ping") for _ in range(POOL_SIZE)))
        except schema.SchemaTooNew:
            raise
        except StoreUnavailable as exc:
            log.warning("store not ready at start-up, will retry on use: %s", exc)

    async def close(self) -> None:
        await self._writes.flush()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _ready(self) -> Db:
        db = self._db
        if not self._schema_ok:
            async with self._schema_lock:
                if not self._schema_ok:
                    with outage("schema set-up"):
                        await schema.ensure(db)
                    self._schema_ok = True
        return db

    async def check(self) -> None:
        db = await self._ready()
        with outage("ping"):
            await db.command("ping")

    # -- history ------------------------------------------------------------------------------

    async def append_many(
        self,
        channel: str,
        epoch: str,
        items: list[tuple[int, bytes]],
        history_size: int,
        ttl_s: float,
    ) -> Refused:
        return await self._writes.append_many(channel, epoch, items, history_size, ttl_s)

    async def history(
        self, channel: str, epoch: str, since: int | None, limit: int, reverse: bool
    ) -> list[tuple[int, bytes]]:
        return await self._reads.history(channel, epoch, since, limit, reverse)

    async def span(
        self, channel: str, epoch: str, since: int, upto: int
    ) -> list[tuple[int, bytes | None]]:
        return await self._reads.span(channel, epoch, since, upto)

    async def lowest(self, channel: str, epoch: str) -> int | None:
        return await self._reads.lowest(channel, epoch)

    async def void(self, channel: str, epoch: str, offsets: list[int], ttl_s: float) -> None:
        await self._writes.void(channel, epoch, offsets, ttl_s)

    async def claim(self, channel: str, epoch: str, offsets: list[int], ttl_s: float) -> Settle:
        return await self._writes.claim(channel, epoch, offsets, ttl_s)

    async def reserve(self, channel: str, epoch: str, offset: int) -> None:
        await self._writes.reserve(channel, epoch, offset)

    async def position(self, channel: str) -> Position | None:
        return await self._reads.position(channel)

    # -- users and sessions -------------------------------------------------------------------

    async def upsert_user(self, provider: str, subject: str, name: str, avatar: str | None) -> User:
        return await self._users.upsert_user(provider, subject, name, avatar)

    async def get_user(self, user_id: str) -> User | None:
        return await self._users.get_user(user_id)

    async def create_session(self, user_id: str, ttl_s: float) -> Session:
        return await self._users.create_session(user_id, ttl_s)

    async def get_session(self, session_id: str) -> Session | None:
        return await self._users.get_session(session_id)

    async def delete_session(self, session_id: str) -> Session | None:
        return await self._users.delete_session(session_id)


async def prepare_store(config: MongoConfig) -> None:
    """Make the schema once per machine before processes fork; raise SchemaTooNew if newer."""
    store = MongoStore(config)
    try:
        await store.start()
    finally:
        await store.close()
