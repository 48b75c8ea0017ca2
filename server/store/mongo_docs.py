"""How a channel's history is laid out in MongoDB documents (schema version 3).

A publications document holds a run: consecutive offsets of one channel written together (one
group commit's publications of the channel), because much of the embedded server's cost is per
document and per index entry. Its one index entry is (channel, last), a scalar: a multikey
index of every offset (version 2) cost the embedded server an entry per publication and capped
durable publishing near 3,500/s (docs/benchmarks.md). Runs hold consecutive offsets only, so
runs of different writers never interleave and ordering them by their newest offset orders them
by their oldest too. A run's `_id` names its channel, epoch and offsets, so writing the same
run again (a retry) is refused as already there.

Void offsets are documents of their own collection, written *pending* and then made *final*
(mongo_writes): of a void and a publication racing for an offset, a final void wins, and a
publication whose offset a pending void still claims is not shown until the void settles.

A run records the history size it was written under. Readers hide what lies at or below the
channel's floor, the newest offset of a run minus its size: a run straddling the floor stays
until it is wholly below it (trimming removes whole runs), and is never seen meanwhile.
Version 1 and 2 documents are migrated by schema.ensure.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from server.store.base import VOID

#: A run's bodies at most, in bytes: well inside BSON's 16 MiB document limit.
RUN_BYTES = 4 << 20
PENDING = "pending"
FINAL = "final"
#: A pending void this old was left by a writer that failed between its writes: readers no
#: longer hold back the offsets it claims (a publisher waiting on it withdraws far sooner).
ABANDONED = timedelta(seconds=60)

Doc = dict[str, Any]
Item = tuple[int, bytes | None]


def runs(
    channel: str, epoch: str, items: list[tuple[int, bytes]], size: int, expire_at: datetime
) -> list[Doc]:
    """The documents for publications (offset, body) of one channel, offsets ascending and
    distinct: a run each stretch of consecutive offsets, split where the bodies grow large."""
    docs: list[Doc] = []
    offsets: list[int] = []
    bodies: list[bytes] = []
    held = 0
    for offset, body in items:
        if offsets and (offset != offsets[-1] + 1 or held + len(body) > RUN_BYTES):
            docs.append(_run(channel, epoch, offsets, bodies, size, expire_at))
            offsets, bodies, held = [], [], 0
        offsets.append(offset)
        bodies.append(body)
        held += len(body)
    if offsets:
        docs.append(_run(channel, epoch, offsets, bodies, size, expire_at))
    return docs


def _run(
    channel: str,
    epoch: str,
    offsets: list[int],
    bodies: list[bytes],
    size: int,
    expire_at: datetime,
) -> Doc:
    return {
        "_id": f"{channel}/{epoch}/{offsets[0]}-{offsets[-1]}",  # "/" is in no channel name
        "channel": channel,
        "epoch": epoch,
        "offset": offsets,
        "first": offsets[0],
        "last": offsets[-1],
        "body": bodies,
        "size": size,
        "expire_at": expire_at,
    }


def void(channel: str, epoch: str, offsets: list[int], expire_at: datetime, state: str) -> Doc:
    """A voids document claiming `offsets` (ascending)."""
    return {
        "_id": ObjectId(),
        "channel": channel,
        "epoch": epoch,
        "offset": offsets,
        "first": offsets[0],
        "last": offsets[-1],
        "state": state,
        "expire_at": expire_at,
    }


def body(doc: Doc, offset: int) -> bytes | None:
    """The body `doc` holds for `offset` (one of its offsets), VOID for a void's."""
    if "state" in doc:
        return VOID
    found: bytes = doc["body"][bisect_left(doc["offset"], offset)]  # a run's offsets ascend
    return found


def current(doc: Doc, epoch: str, now: datetime) -> bool:
    """Whether readers of `epoch` see anything of `doc` (its epoch's, not expired)."""
    return bool(doc["epoch"] == epoch and doc["expire_at"] > now)


def floor_of(doc: Doc) -> int:
    """The floor a run sets: its newest offset minus its history size."""
    return int(doc["last"]) - int(doc["size"])


def claims(voids: list[Doc], epoch: str, now: datetime) -> tuple[dict[int, Doc], set[int]]:
    """The offsets that `epoch`'s final voids make void (with a void holding each), and those
    that pending ones, not abandoned, still claim."""
    final: dict[int, Doc] = {}
    pending: set[int] = set()
    for doc in voids:
        if not current(doc, epoch, now):
            continue
        if doc["state"] == FINAL:
            final.update(dict.fromkeys(doc["offset"], doc))
        elif doc["_id"].generation_time > now - ABANDONED:
            pending.update(doc["offset"])
    return final, pending


def visible(
    runs: list[Doc], voids: list[Doc], epoch: str, now: datetime, floor: int = 0
) -> list[tuple[int, Doc]]:
    """What readers see of a channel: each offset of `epoch` still unexpired and above the
    floor, oldest first, with the document holding it (a void's, for a void offset). An offset
    a pending void claims is left out until the void settles. The floor is the highest of
    `floor` and those the runs set: `runs` must include the channel's newest unless `floor`
    was read from it."""
    final, pending = claims(voids, epoch, now)
    seen: dict[int, Doc] = {}
    for doc in runs:
        if current(doc, epoch, now):
            floor = max(floor, floor_of(doc))
            for o in doc["offset"]:
                seen.setdefault(o, doc)  # a run written twice is read once
    for o in pending:
        seen.pop(o, None)
    seen.update(final)
    return sorted(((o, d) for o, d in seen.items() if o > floor), key=lambda entry: entry[0])
