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

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from server.store import mongo_docs, schema
from server.store.base import Refused, Settle, StoreConflict, StoreUnavailable
from server.store.batch import Batch
from server.store.commit import GroupCommit
from server.store.mongo_docs import Doc
from server.store.mongo_io import Db, Ready, insert_once, outage, when

#: Channels whose epoch and trim floor this process remembers (least recently written go).
CHANNEL_CACHE = 10_000
#: How long a publisher waits for a pending void claiming its offsets to settle before it
#: withdraws the claim: far longer than a void's two writes take, even in a restart's storm.
PENDING_WAIT_S = 5.0
#: What reading a void takes: everything but the expiry.
VOID_FIELDS = {"channel": 1, "epoch": 1, "offset": 1, "state": 1}


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
        #: Voids written pending, reservations and voids settled, many channels' in one write.
        self._claims: Batch[Doc, None] = Batch(self._insert_claims)
        self._reserves: Batch[tuple[str, str, int], None] = Batch(self._write_reserves)
        self._settles: Batch[tuple[Doc, Doc], None] = Batch(self._write_settles)

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
        """Write a batch: per channel, runs of the newest epoch's offsets above the floor
        (older epochs' documents go, `_kept`); then, at once, trim and read the voids that
        claim any of the offsets written.

        Returns the items refused because a void took their offset.
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
                with outage("storing publications"):
                    await insert_once(db[schema.PUBLICATIONS], docs)
                self._remember(docs)
                voided, _ = await asyncio.gather(self._voided(db, docs, kept), self._trim(db, kept))
            finally:
                self._written(by_channel)
            for i, item in enumerate(batch):
                if (item.channel, item.offset) in voided:
                    refused[i] = StoreConflict(
                        f"offset {item.offset} of {item.channel} was made void before it was stored"
                    )
        else:
            await self._trim(db, kept)
        return refused

    async def _voided(
        self, db: Db, docs: list[Doc], kept: dict[str, _Kept]
    ) -> set[tuple[str, int]]:
        """The (channel, offset) of the runs just written that a void took. A void still
        pending is waited for, and withdrawn from these offsets if it stays pending. Final
        voids wholly at or below their channel's floor, which readers no longer look at, are
        deleted on the way."""
        channels = list({d["channel"] for d in docs})
        with outage("checking for void offsets"):
            found = await (
                db[schema.VOIDS].find({"channel": {"$in": channels}}, VOID_FIELDS).to_list(None)
            )
            dead = [
                v["_id"]
                for v in found
                if v["state"] == mongo_docs.FINAL
                and v["epoch"] == kept[v["channel"]].epoch
                and max(v["offset"], default=0) <= kept[v["channel"]].floor
            ]
            if dead:
                await db[schema.VOIDS].delete_many({"_id": {"$in": dead}})
        voided: set[tuple[str, int]] = set()
        if not found:
            return voided
        mine: dict[tuple[str, str], set[int]] = {}
        for doc in docs:
            mine.setdefault((doc["channel"], doc["epoch"]), set()).update(doc["offset"])
        for v in found:
            wanted = mine.get((v["channel"], v["epoch"]), set()).intersection(v["offset"])
            if wanted:
                taken = await _settled(db[schema.VOIDS], v, sorted(wanted))
                voided.update((v["channel"], o) for o in taken)
        return voided

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
                {"channel": channel, "last": {"$lte": k.floor}}, {"epoch": 1}
            )
            return [d["_id"] async for d in found if d["epoch"] == k.epoch]

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
                stale = {"channel": channel, "epoch": {"$ne": epoch}}
                await asyncio.gather(
                    db[schema.PUBLICATIONS].delete_many(stale),
                    db[schema.VOIDS].delete_many(stale),
                )

    async def void(self, channel: str, epoch: str, offsets: list[int], ttl_s: float) -> None:
        if offsets:
            settle = await self.claim(channel, epoch, offsets, ttl_s, reserve=False)
            await settle(True)

    async def claim(
        self, channel: str, epoch: str, offsets: list[int], ttl_s: float, reserve: bool = True
    ) -> Settle:
        """A void written pending, with the reservation and the channel's epoch in the same
        round trip. Settling it True pulls the offsets a run holds already from it as it is
        made final, in one update: of a void and a publication racing for an offset, either
        this finds the run, or the publisher finds this void (`_voided`)."""
        db = await self._ready()
        claim = sorted(set(offsets))
        doc = mongo_docs.void(channel, epoch, claim, when(time.time() + ttl_s), mongo_docs.PENDING)
        voids = db[schema.VOIDS]
        writes = [self._kept(db, channel, epoch), self._claims(doc)]
        if reserve:
            writes.append(self.reserve(channel, epoch, claim[-1]))
        try:
            with outage("claiming offsets"):
                await asyncio.gather(*writes)
        finally:
            self._written((channel,))

        async def settle(void: bool) -> None:
            try:
                with outage("making offsets void"):
                    if not void:
                        await voids.delete_one({"_id": doc["_id"], "state": mongo_docs.PENDING})
                        return
                    runs = db[schema.PUBLICATIONS].find(
                        {"channel": channel, "last": {"$gte": claim[0]}}, {"epoch": 1, "offset": 1}
                    )
                    held = {
                        o async for d in runs if d["epoch"] == epoch for o in d["offset"]
                    }.intersection(claim)
                    update: dict[str, Any] = {"$set": {"state": mongo_docs.FINAL}}
                    if held:
                        update["$pullAll"] = {"offset": sorted(held)}
                    await self._settles(({"_id": doc["_id"], "state": mongo_docs.PENDING}, update))
            finally:
                self._written((channel,))

        return settle

    async def reserve(self, channel: str, epoch: str, offset: int) -> None:
        await self._reserves((channel, epoch, offset))

    async def _insert_claims(self, docs: list[Doc]) -> list[None]:
        db = await self._ready()
        with outage("claiming offsets"):
            await db[schema.VOIDS].insert_many(docs, ordered=False)
        return [None] * len(docs)

    async def _write_reserves(self, reserves: list[tuple[str, str, int]]) -> list[None]:
        db = await self._ready()
        updates = [
            UpdateOne({"_id": channel, "epoch": epoch}, {"$max": {"reserved": offset}})
            for channel, epoch, offset in reserves
        ]
        with outage("reserving offsets"):
            await db[schema.CHANNELS].bulk_write(updates, ordered=False)
        return [None] * len(reserves)

    async def _write_settles(self, settles: list[tuple[Doc, Doc]]) -> list[None]:
        db = await self._ready()
        with outage("making offsets void"):
            await db[schema.VOIDS].bulk_write([UpdateOne(*s) for s in settles], ordered=False)
        return [None] * len(settles)


async def _settled(voids: Any, void: Doc, mine: list[int]) -> list[int]:
    """Which of `mine` (offsets of a run just written) `void` takes: those it holds once
    final. While it is pending (its writer between its writes) it is read again, and after
    PENDING_WAIT_S withdrawn from `mine`, on condition that it is still pending."""
    deadline = time.monotonic() + PENDING_WAIT_S
    delay = 0.005
    with outage("settling a void"):
        while void is not None and void["state"] == mongo_docs.PENDING:
            if time.monotonic() >= deadline:
                withdrawn = await voids.update_one(
                    {"_id": void["_id"], "state": mongo_docs.PENDING},
                    {"$pullAll": {"offset": mine}},
                )
                if withdrawn.matched_count:
                    return []
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            void = await voids.find_one({"_id": void["_id"]}, VOID_FIELDS)
    return [] if void is None else sorted(set(mine).intersection(void["offset"]))
