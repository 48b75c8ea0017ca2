"""The event queue in MongoDB (collection `webhooks`): events outlive the process that made them.

A document is an event with `next_at`, the time it may be claimed: claiming moves `next_at` to
the end of a lease (an atomic find-and-modify, so two processes never both get it), a failure
moves it to the retry, success deletes it. An event that is not its key's head is pushed back to
its head's `next_at`, so a waiting key costs no work until its head is due.
"""

from __future__ import annotations

import time
from typing import Any

from bson import Binary
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from server.config import MongoConfig
from server.store.base import StoreUnavailable
from server.webhooks.events import Event
from server.webhooks.queue import EventQueue, Queued

COLLECTION = "webhooks"
INDEXES = [
    IndexModel([("next_at", ASCENDING)], name="due"),
    IndexModel([("key", ASCENDING), ("seq", ASCENDING)], name="key_order"),
]
#: Candidates read per claim, beyond the heads asked for: later events of the same keys.
OVERSCAN = 4


def _event(doc: dict[str, Any]) -> Event:
    return Event(
        doc["_id"], doc["type"], doc["key"], int(doc["seq"]), bytes(doc["body"]), doc["created"]
    )


class MongoQueue(EventQueue):
    def __init__(self, config: MongoConfig) -> None:
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            config.url,
            serverSelectionTimeoutMS=2000,
            connectTimeoutMS=2000,
            socketTimeoutMS=10000,
            appname="switchboard-webhooks",
        )
        self._coll: AsyncCollection[dict[str, Any]] = self._client[config.database][COLLECTION]
        self._indexed = False

    async def start(self) -> None:
        try:
            await self._indexes()
        except StoreUnavailable:
            pass  # made on first use once MongoDB is back

    async def _indexes(self) -> None:
        if not self._indexed:
            try:
                await self._coll.create_indexes(INDEXES)
            except PyMongoError as exc:
                raise StoreUnavailable(f"MongoDB webhooks: {exc}") from exc
            self._indexed = True

    async def close(self) -> None:
        await self._client.close()

    async def put(self, event: Event) -> None:
        doc = {
            "_id": event.id,
            "type": event.type,
            "key": event.key,
            "seq": event.seq,
            "body": Binary(event.body),
            "created": event.created,
            "next_at": event.created,
            "attempts": 0,
        }
        try:
            await self._indexes()
            await self._coll.insert_one(doc)
        except DuplicateKeyError:
            pass  # a retried put that had arrived
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB webhooks: {exc}") from exc

    async def claim(self, now: float, lease_s: float, limit: int) -> list[Queued]:
        try:
            await self._indexes()
            return await self._claim(now, lease_s, limit)
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB webhooks: {exc}") from exc

    async def _claim(self, now: float, lease_s: float, limit: int) -> list[Queued]:
        due = self._coll.find(
            {"next_at": {"$lte": now}},
            {"key": 1, "seq": 1},
            sort=[("seq", ASCENDING)],
            limit=limit * OVERSCAN,
        )
        claimed: list[Queued] = []
        seen: set[str] = set()
        async for candidate in due:
            key, seq = candidate["key"], candidate["seq"]
            if key in seen:
                continue
            seen.add(key)
            head = await self._coll.find_one(
                {"key": key, "seq": {"$lt": seq}},
                {"next_at": 1},
                sort=[("seq", ASCENDING)],
            )
            if head is not None:  # waits for the head: not due before it
                await self._coll.update_one(
                    {"_id": candidate["_id"], "next_at": {"$lt": head["next_at"]}},
                    {"$set": {"next_at": head["next_at"]}},
                )
                continue
            doc = await self._coll.find_one_and_update(
                {"_id": candidate["_id"], "next_at": {"$lte": now}},
                {"$set": {"next_at": now + lease_s}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                claimed.append(Queued(_event(doc), int(doc.get("attempts", 0))))
                if len(claimed) >= limit:
                    break
        return claimed

    async def done(self, event: Event) -> None:
        try:
            await self._coll.delete_one({"_id": event.id})
            nxt = await self._coll.find_one(
                {"key": event.key}, {"attempts": 1}, sort=[("seq", ASCENDING)]
            )
            if nxt is not None and not nxt.get("attempts"):
                now = time.time()
                await self._coll.update_one(
                    {"_id": nxt["_id"], "next_at": {"$gt": now}, "attempts": 0},
                    {"$set": {"next_at": now}},
                )
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB webhooks: {exc}") from exc

    async def retry(self, event: Event, at: float, attempts: int) -> None:
        try:
            await self._coll.update_one(
                {"_id": event.id}, {"$set": {"next_at": at, "attempts": attempts}}
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB webhooks: {exc}") from exc

    async def next_due(self) -> float | None:
        try:
            doc = await self._coll.find_one({}, {"next_at": 1}, sort=[("next_at", ASCENDING)])
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB webhooks: {exc}") from exc
        return None if doc is None else float(doc["next_at"])

    async def size(self) -> int:
        try:
            return await self._coll.count_documents({})
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB webhooks: {exc}") from exc
