"""Writing a channel's history to MongoDB: appends (group-committed, `[mongo] group_commit_ms`),
voids, reserved offsets, and the epoch and trim floor each channel is written under."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DeleteMany
from pymongo.errors import BulkWriteError, DuplicateKeyError

from server.store import schema
from server.store.base import Refused, StoreConflict, StoreUnavailable
from server.store.commit import GroupCommit
from server.store.mongo_io import Db, Ready, outage, when

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


class MongoWrites:
    def __init__(
        self, ready: Ready, group_commit_ms: float, written: Callable[[Iterable[str]], None]
    ) -> None:
        """`written` hears of every channel whose write finished (MongoReads.written)."""
        self._ready = ready
        self._written = written
        self._channels: OrderedDict[str, _Kept] = OrderedDict()
        self._commit = (
            GroupCommit(self._write, group_commit_ms / 1000) if group_commit_ms > 0 else None
        )

    async def flush(self) -> None:
        if self._commit is not None:
            await self._commit.flush()

    async def append_many(
        self,
        channel: str,
        epoch: str,
        items: list[tuple[int, bytes]],
        history_size: int,
        ttl_s: float,
    ) -> Refused:
        expire_at = when(time.time() + ttl_s)
        appends = [Append(channel, epoch, o, b, history_size, expire_at) for o, b in items]
        if self._commit is None:
            return await self._write(appends)
        written = [self._commit.enqueue(a) for a in appends]
        refused: Refused = {}
        for i, fut in enumerate(written):  # a run may span two group commits: one may fail
            try:
                await fut
            except Exception as exc:
                refused[i] = exc
        return refused

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
        # trimmed while ours was in flight leaves nothing of ours below its floor. One delete
        # per channel, in one round trip: each is a range of the (channel, offset) index, where
        # an `$or` of channels made the embedded server scan the whole collection per write.
        trims = [
            DeleteMany({"channel": c, "offset": {"$lte": k.floor}})
            for c, k in kept.items()
            if k.floor
        ]
        if trims:
            with outage("trimming history"):
                await db[schema.PUBLICATIONS].bulk_write(trims, ordered=False)
        return refused

    async def _insert(self, db: Db, docs: list[dict[str, Any]]) -> set[tuple[str, int]]:
        """Insert; an older epoch's leftover is replaced, a retried one kept.

        Returns the (channel, offset) of publications refused because a void holds the offset.
        """
        pubs = db[schema.PUBLICATIONS]
        with outage("storing publications"):
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
            mine: dict[str, list[int]] = {}
            for d in same:
                if not d.get("void"):
                    mine.setdefault(d["channel"], []).append(d["offset"])
            voided: set[tuple[str, int]] = set()
            for channel, offsets in mine.items():  # by channel: an index range each, no `$or`
                found = pubs.find(
                    {"channel": channel, "offset": {"$in": offsets}, "void": True},
                    {"_id": 0, "offset": 1},
                )
                voided.update([(channel, d["offset"]) async for d in found])
            return voided

    async def _kept(self, db: Db, channel: str, epoch: str) -> _Kept:
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

    async def _record_epoch(self, db: Db, channel: str, epoch: str) -> None:
        """Record the channel's epoch; a new one drops what the channel held under the old."""
        channels = db[schema.CHANNELS]
        with outage("recording the epoch"):
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

    async def void(self, channel: str, epoch: str, offsets: list[int], ttl_s: float) -> None:
        if not offsets:
            return
        db = await self._ready()
        await self._kept(db, channel, epoch)
        expire_at = when(time.time() + ttl_s)
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
        with outage("reserving offsets"):
            await db[schema.CHANNELS].update_one(
                {"_id": channel, "epoch": epoch}, {"$max": {"reserved": offset}}
            )


def _duplicates(exc: BulkWriteError, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents refused as duplicate keys; any other write error is re-raised."""
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise exc
    return [docs[e["index"]] for e in errors]
