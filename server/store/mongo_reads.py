"""Reading a channel's history and position from MongoDB, with concurrent reads of one range
shared: a restart's reconnecting subscribers of a channel all recover the same range."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from server.position import Position
from server.store import mongo_docs, schema
from server.store.base import VOID
from server.store.batch import Batch
from server.store.mongo_docs import Doc
from server.store.mongo_io import Db, Ready, outage, when

#: How long a complete span read serves later readers of the same range. A restart's
#: subscribers of a channel arrive over seconds, not all while one read is in flight.
SPAN_KEEP_S = 2.0

Span = list[tuple[int, bytes | None]]

#: What reads of offsets take of a document: everything but the bodies.
FIELDS = {
    "channel": 1,
    "epoch": 1,
    "offset": 1,
    "first": 1,
    "last": 1,
    "size": 1,
    "state": 1,
    "expire_at": 1,
}


class MongoReads:
    def __init__(self, ready: Ready) -> None:
        self._ready = ready
        #: The channel documents and voids of channels whose position is read at once.
        self._positions: Batch[str, tuple[Doc | None, list[Doc]]] = Batch(self._read_positions)
        #: Span reads in flight: (channel, epoch, upto) -> (since, the read).
        self._spans: dict[tuple[str, str, int], tuple[int, asyncio.Future[Any]]] = {}
        #: Complete span reads kept for later readers, oldest first: (channel, epoch, upto) ->
        #: (since, until when, the span). Each one kept first drops those expired.
        self._complete: dict[tuple[str, str, int], tuple[int, float, Span]] = {}

    async def history(
        self, channel: str, epoch: str, since: int | None, limit: int, reverse: bool
    ) -> list[tuple[int, bytes]]:
        """Offsets first, then the bodies of only the runs holding the page: a small page of a
        long history of large publications reads little."""
        page = await self._page(channel, epoch, since, limit, reverse)
        if not page:
            return []
        db = await self._ready()
        ids = list({d["_id"] for _, d in page})
        with outage("reading history"):
            found = db[schema.PUBLICATIONS].find({"_id": {"$in": ids}}, {"offset": 1, "body": 1})
            runs = {d["_id"]: d async for d in found}
        # A run trimmed in between lay below the floor by then: its offsets are left out.
        return [
            (o, body)
            for o, d in page
            if d["_id"] in runs and (body := mongo_docs.body(runs[d["_id"]], o)) is not VOID
        ]

    async def _page(
        self, channel: str, epoch: str, since: int | None, limit: int, reverse: bool
    ) -> list[tuple[int, mongo_docs.Doc]]:
        """The page's offsets with the runs holding them. Runs are read in order of their
        newest offset (newest first, or oldest first: runs do not interleave), after the
        channel's voids, and the read stops once no run left can hold an offset of the page.
        Going forward needs the floor first, from the newest run."""
        db = await self._ready()
        pubs = db[schema.PUBLICATIONS]
        now = when(time.time())
        floor = 0
        with outage("reading history"):
            if reverse:
                voids = await _voids(db, channel, since or 0)
            else:
                newest, voids = await asyncio.gather(
                    _newest(pubs, channel), _voids(db, channel, since or 0)
                )
                if newest is None:
                    return []
                if mongo_docs.current(newest, epoch, now):
                    floor = mongo_docs.floor_of(newest)
        low = max(since or 0, floor)
        final, pending = mongo_docs.claims(voids, epoch, now)
        hidden = pending.union(final)
        runs = await _in_order(pubs, channel, epoch, now, low, limit, reverse, hidden)
        kept = mongo_docs.visible(runs, voids, epoch, now, floor)
        page = [(o, d) for o, d in kept if "state" not in d and o > low]
        return (page[::-1] if reverse else page)[:limit]

    async def span(self, channel: str, epoch: str, since: int, upto: int) -> Span:
        """Shared by concurrent readers of the same channel up to the same offset. A reader
        joins a read only when no write to the channel finished after that read began, so what
        it gets is what a read of its own would have found. A read that found every offset
        of its range serves later readers for SPAN_KEEP_S: such a range never changes (a void
        cannot take an offset a run holds once it is seen, mongo_docs), except that trimming
        may since have removed some of it."""
        key = (channel, epoch, upto)
        complete = self._complete.get(key)
        if complete is not None and complete[0] <= since and complete[1] > time.monotonic():
            return [entry for entry in complete[2] if entry[0] >= since]
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

    async def _read_span(self, channel: str, epoch: str, since: int, upto: int) -> Span:
        kept = await self._visible(channel, epoch, since, bodies=True)
        span = [(o, mongo_docs.body(d, o)) for o, d in kept if since <= o <= upto]
        if len({o for o, _ in span if o > since}) == upto - since:  # no holes: keep it
            now, complete = time.monotonic(), self._complete
            while complete and next(iter(complete.values()))[1] <= now:  # oldest first: expired go
                del complete[next(iter(complete))]
            key = (channel, epoch, upto)
            complete.pop(key, None)
            complete[key] = (since, now + SPAN_KEEP_S, span)
        return span

    async def lowest(self, channel: str, epoch: str) -> int | None:
        kept = await self._visible(channel, epoch, None, bodies=False)
        return kept[0][0] if kept else None

    async def position(self, channel: str) -> Position | None:
        """The newest offset of the channel's epoch that a run or a void holds, or that was
        reserved."""
        db = await self._ready()
        with outage("reading the position"):
            (current, voids), newest = await asyncio.gather(
                self._positions(channel), _newest(db[schema.PUBLICATIONS], channel)
            )
        void = max(voids, key=lambda d: int(d["last"]), default=None)
        found = [d for d in (newest, void) if d is not None]
        if current is None or not found:
            return None
        epoch, now = current["epoch"], when(time.time())
        if all(mongo_docs.current(d, epoch, now) for d in found):
            top = max(d["last"] for d in found)
        else:  # another epoch's or expired: what is left of this epoch, if anything
            kept = await self._visible(channel, epoch, None, bodies=False)
            if not kept:
                return None
            top = kept[-1][0]
        return Position(max(top, current.get("reserved", 0)), epoch)

    async def _read_positions(self, channels: list[str]) -> list[tuple[Doc | None, list[Doc]]]:
        """For each channel, its document and its voids: two reads for any number of channels
        (a void is short-lived, so a channel has few)."""
        db = await self._ready()
        wanted = list(set(channels))
        with outage("reading the position"):
            docs, voids = await asyncio.gather(
                db[schema.CHANNELS].find({"_id": {"$in": wanted}}).to_list(None),
                db[schema.VOIDS].find({"channel": {"$in": wanted}}, FIELDS).to_list(None),
            )
        current = {d["_id"]: d for d in docs}
        held: dict[str, list[Doc]] = {}
        for void in voids:
            held.setdefault(void["channel"], []).append(void)
        return [(current.get(c), held.get(c, [])) for c in channels]

    async def _visible(
        self, channel: str, epoch: str, since: int | None, bodies: bool
    ) -> list[tuple[int, mongo_docs.Doc]]:
        """What readers see of the channel's `epoch` (mongo_docs.visible), from `since` on:
        every run and void from `since` to the newest, the newest run setting the floor."""
        db = await self._ready()
        query = {"channel": channel, "last": {"$gte": since or 0}}
        fields = dict(FIELDS, body=1) if bodies else FIELDS
        with outage("reading history"):
            runs, voids = await asyncio.gather(
                db[schema.PUBLICATIONS].find(query, fields).to_list(None),
                _voids(db, channel, since or 0),
            )
        return mongo_docs.visible(runs, voids, epoch, when(time.time()))


async def _newest(coll: Any, channel: str) -> mongo_docs.Doc | None:
    """The channel's run (or void) holding its highest offset, without bodies."""
    found: mongo_docs.Doc | None = await coll.find_one(
        {"channel": channel}, FIELDS, sort=[("last", -1)]
    )
    return found


async def _voids(db: Db, channel: str, since: int) -> list[mongo_docs.Doc]:
    """The channel's voids holding offsets from `since` on."""
    found: list[mongo_docs.Doc] = (
        await db[schema.VOIDS]
        .find({"channel": channel, "last": {"$gte": since}}, FIELDS)
        .to_list(None)
    )
    return found


async def _in_order(
    pubs: Any,
    channel: str,
    epoch: str,
    now: datetime,
    low: int,
    limit: int,
    reverse: bool,
    hidden: set[int],
) -> list[mongo_docs.Doc]:
    """The channel's runs holding offsets above `low`, newest first (or oldest first), up to
    the first that cannot hold one of the `limit` publications nearest that end; offsets in
    `hidden` (voids' claims) are not publications."""
    query = {"channel": channel, "last": {"$gt": low}}
    docs: list[mongo_docs.Doc] = []
    found: list[int] = []  # publications' offsets so far, ascending
    with outage("reading history"):
        cursor = pubs.find(query, FIELDS).sort("last", -1 if reverse else 1)
        try:
            async for doc in cursor.batch_size(min(limit + 1, 1000)):
                if reverse:
                    beyond = len(found) - bisect_right(found, doc["last"])
                else:
                    beyond = bisect_left(found, doc["first"])
                if beyond >= limit:
                    break
                docs.append(doc)
                if mongo_docs.current(doc, epoch, now):
                    for o in doc["offset"]:
                        if o > low and o not in hidden:
                            insort(found, o)
        finally:
            await cursor.close()
    return docs
