"""Reading a channel's history and position from MongoDB, with concurrent reads of one range
shared: a restart's reconnecting subscribers of a channel all recover the same range."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from server.position import Position
from server.store import schema
from server.store.base import VOID
from server.store.mongo_io import Ready, outage, when


class MongoReads:
    def __init__(self, ready: Ready) -> None:
        self._ready = ready
        #: Span reads in flight: (channel, epoch, upto) -> (since, the read).
        self._spans: dict[tuple[str, str, int], tuple[int, asyncio.Future[Any]]] = {}

    async def history(
        self, channel: str, epoch: str, since: int | None, limit: int, reverse: bool
    ) -> list[tuple[int, bytes]]:
        db = await self._ready()
        query: dict[str, Any] = {
            "channel": channel,
            "epoch": epoch,
            "expire_at": {"$gt": when(time.time())},
            "void": {"$ne": True},
        }
        if since is not None:
            query["offset"] = {"$gt": since}
        with outage("reading history"):
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
        """Shared by concurrent readers of the same channel up to the same offset. A reader
        joins a read only when no write to the channel finished after that read began, so what
        it gets is what a read of its own would have found."""
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

    def written(self, channels: Iterable[str]) -> None:
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
            "expire_at": {"$gt": when(time.time())},
        }
        with outage("reading history"):
            cursor = db[schema.PUBLICATIONS].find(
                query, {"_id": 0, "offset": 1, "body": 1, "void": 1}
            )
            kept = [(d["offset"], VOID if d.get("void") else d["body"]) async for d in cursor]
        return sorted(kept, key=lambda entry: entry[0])

    async def lowest(self, channel: str, epoch: str) -> int | None:
        db = await self._ready()
        query = {"channel": channel, "epoch": epoch, "expire_at": {"$gt": when(time.time())}}
        with outage("reading history"):
            doc = await db[schema.PUBLICATIONS].find_one(
                query, {"_id": 0, "offset": 1}, sort=[("offset", 1)]
            )
        return None if doc is None else int(doc["offset"])

    async def position(self, channel: str) -> Position | None:
        db = await self._ready()
        with outage("reading the position"):
            current = await db[schema.CHANNELS].find_one({"_id": channel})
            if current is None:
                return None
            newest = await db[schema.PUBLICATIONS].find_one(
                {
                    "channel": channel,
                    "epoch": current["epoch"],
                    "expire_at": {"$gt": when(time.time())},
                },
                {"_id": 0, "offset": 1},
                sort=[("offset", -1)],
            )
        if newest is None:
            return None
        return Position(max(newest["offset"], current.get("reserved", 0)), current["epoch"])
