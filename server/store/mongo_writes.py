"""Writing a channel's history to MongoDB: appends (group-committed, `[mongo] group_commit_ms`,
one run per channel per commit: mongo_docs), voids, trims, reserved offsets, and the epoch and
trim floor each channel is written under."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError

from server.store import mongo_docs, schema
from server.store.base import Refused, StoreConflict, StoreUnavailable
from server.store.commit import GroupCommit
from server.store.mongo_docs import Doc
from server.store.mongo_io import Db, Ready, outage, when

#: Channels whose epoch and trim floor this process remembers (least recently written go).
CHANNEL_CACHE = 10_000
DUPLICATE_KEY = 11000
#: Rounds of writing a run again without the offsets other writes took meanwhile.
SETTLE_ATTEMPTS = 5


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
    """What this process knows of a channel: its epoch, the offset it is trimmed up to and the
    runs it wrote that are not trimmed yet."""

    epoch: str
    recorded: asyncio.Future[None]  # the epoch is in the channels collection
    floor: int = 0
    runs: deque[tuple[int, Any]] = field(default_factory=deque)  # (newest offset, _id)
    swept: bool = False  # leftovers of other writers were looked for


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
        """Write a batch: per channel, one run of the newest epoch's offsets above the floor
        (older epochs' documents go, `_kept`); then trim.

        Returns the items refused because their offset was made void first.
        """
        db = await self._ready()
        by_channel: dict[str, list[Append]] = {}
        for item in batch:
            by_channel.setdefault(item.channel, []).append(item)
        docs: list[Doc] = []
        kept: dict[str, _Kept] = {}
        for channel, items in by_channel.items():
            newest = max(items, key=lambda i: i.offset)
            k = kept[channel] = await self._kept(db, channel, newest.epoch)
            k.floor = max(k.floor, newest.offset - newest.history_size)
            run = {
                i.offset: i.body for i in items if i.epoch == newest.epoch and i.offset > k.floor
            }
            expire_at = max(i.expire_at for i in items)
            docs += mongo_docs.runs(
                channel, newest.epoch, sorted(run.items()), newest.history_size, expire_at
            )
        refused: Refused = {}
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
        await self._trim(db, kept)
        return refused

    async def _trim(self, db: Db, kept: dict[str, _Kept]) -> None:
        """Delete the runs wholly at or below their channel's floor, in one round trip.

        The runs this process wrote are known; those left by a previous run of the process or
        by a process gone are looked for once per channel (the channel's first trim here).
        """
        ids: list[Any] = []
        for channel, k in kept.items():
            if not k.floor:
                continue
            if not k.swept:
                k.swept = True
                ids += await self._leftovers(db, channel, k)
            while k.runs and k.runs[0][0] <= k.floor:
                ids.append(k.runs.popleft()[1])
        if ids:
            with outage("trimming history"):
                await db[schema.PUBLICATIONS].delete_many({"_id": {"$in": list(set(ids))}})

    async def _leftovers(self, db: Db, channel: str, k: _Kept) -> list[Any]:
        """The ids of `k.epoch`'s runs of `channel` wholly at or below its floor."""
        with outage("trimming history"):
            found = db[schema.PUBLICATIONS].find(
                {"channel": channel, "offset": {"$lte": k.floor}}, {"epoch": 1, "offset": 1}
            )
            return [
                d["_id"]
                async for d in found
                if d["epoch"] == k.epoch and max(mongo_docs.offsets(d)) <= k.floor
            ]

    async def _insert(self, db: Db, docs: list[Doc]) -> set[tuple[str, int]]:
        """Insert runs; an offset held by an older epoch's leftover is taken over, one held by
        the same epoch is left to its holder (a retried publication is stored already).

        Returns the (channel, offset) of publications refused because a void holds the offset.
        """
        pubs = db[schema.PUBLICATIONS]
        voided: set[tuple[str, int]] = set()
        with outage("storing publications"):
            for _ in range(SETTLE_ATTEMPTS):
                try:
                    await pubs.insert_many(docs, ordered=False)
                    self._remember(docs)
                    return voided
                except BulkWriteError as exc:
                    refused = _duplicates(exc, docs)
                taken = {id(d) for d in refused}
                self._remember([d for d in docs if id(d) not in taken])
                docs = []
                for doc in refused:
                    rest = await _settle(pubs, doc, voided)
                    if rest is not None:
                        docs.append(rest)
                if not docs:
                    return voided
        raise StoreUnavailable(
            f"MongoDB storing publications failed: offsets of {docs[0]['channel']} kept being "
            f"taken by other writes ({SETTLE_ATTEMPTS} attempts)"
        )

    def _remember(self, docs: list[Doc]) -> None:
        """Note written runs for trimming, under their channel's current epoch."""
        for doc in docs:
            k = self._channels.get(doc["channel"])
            if k is not None and k.epoch == doc["epoch"]:
                k.runs.append((doc["offset"][-1], doc["_id"]))

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
        doc = mongo_docs.void_run(channel, epoch, sorted(set(offsets)), when(time.time() + ttl_s))
        try:
            await self._insert(db, [doc])
        finally:
            self._written((channel,))

    async def reserve(self, channel: str, epoch: str, offset: int) -> None:
        db = await self._ready()
        with outage("reserving offsets"):
            await db[schema.CHANNELS].update_one(
                {"_id": channel, "epoch": epoch}, {"$max": {"reserved": offset}}
            )


async def _settle(pubs: Any, doc: Doc, voided: set[tuple[str, int]]) -> Doc | None:
    """What of a run refused as a duplicate to write again: its offsets no document of its
    epoch holds. Documents of another epoch holding any are deleted (the channel moved on);
    offsets of a publication run that a void holds go to `voided`."""
    channel, epoch, mine = doc["channel"], doc["epoch"], mongo_docs.offsets(doc)
    held: dict[int, bool] = {}  # offset -> held by a void
    stale: list[Any] = []
    found = pubs.find(
        {"channel": channel, "offset": {"$in": mine}}, {"epoch": 1, "offset": 1, "void": 1}
    )
    async for d in found:
        if d["epoch"] != epoch:
            stale.append(d["_id"])
        else:
            held.update(dict.fromkeys(mongo_docs.offsets(d), bool(d.get("void"))))
    if stale:
        await pubs.delete_many({"_id": {"$in": stale}})
    if not doc.get("void"):
        voided.update((channel, o) for o in mine if held.get(o))
    return mongo_docs.remainder(doc, {o for o in mine if o not in held})


def _duplicates(exc: BulkWriteError, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents refused as duplicate keys; any other write error is re-raised."""
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise exc
    return [docs[e["index"]] for e in errors]
