"""How a channel's history is laid out in MongoDB documents (schema version 2): a run each.

A document holds a run of one channel's offsets written together, one group commit's
publications of the channel or one call's void offsets, because much of the embedded server's
cost is per document: in runs of ten, publications stored 2.6-6 times as fast as one per
document (bench/store_throughput.py). The unique multikey
index on (channel, offset) still keeps each offset in one document across all of them, so a
publication and a void racing for an offset settle on exactly one. Version 1 documents (one
offset each, scalar fields) read the same way.

A run records the history size it was written under. Readers hide what lies at or below the
channel's floor, the newest offset of a run minus its size: a run straddling the floor stays
until it is wholly below it (trimming removes whole runs), and is never seen meanwhile.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime
from typing import Any

from bson import ObjectId

from server.store.base import VOID

#: A run's bodies at most, in bytes: well inside BSON's 16 MiB document limit.
RUN_BYTES = 4 << 20

Doc = dict[str, Any]
Item = tuple[int, bytes | None]


def runs(
    channel: str, epoch: str, items: list[tuple[int, bytes]], size: int, expire_at: datetime
) -> list[Doc]:
    """The documents for publications (offset, body) of one channel, offsets ascending."""
    docs: list[Doc] = []
    offsets: list[int] = []
    bodies: list[bytes] = []
    held = 0
    for offset, body in items:
        if offsets and held + len(body) > RUN_BYTES:
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
        "_id": ObjectId(),
        "channel": channel,
        "epoch": epoch,
        "offset": offsets,
        "body": bodies,
        "size": size,
        "expire_at": expire_at,
    }


def void_run(channel: str, epoch: str, offsets: list[int], expire_at: datetime) -> Doc:
    """One document making `offsets` (ascending) void."""
    return {
        "_id": ObjectId(),
        "channel": channel,
        "epoch": epoch,
        "offset": offsets,
        "void": True,
        "expire_at": expire_at,
    }


def remainder(doc: Doc, keep: set[int]) -> Doc | None:
    """A new document of `doc`'s offsets in `keep` (a write retried without the others)."""
    pairs = [item for item in items(doc) if item[0] in keep]
    if not pairs:
        return None
    rest = dict(doc, _id=ObjectId(), offset=[o for o, _ in pairs])
    if not doc.get("void"):
        rest["body"] = [b for _, b in pairs]
    return rest


def offsets(doc: Doc) -> list[int]:
    found = doc["offset"]
    return list(found) if isinstance(found, list) else [found]


def items(doc: Doc) -> list[Item]:
    """(offset, body) of a document of either schema version, VOID for a void offset."""
    found = offsets(doc)
    if doc.get("void"):
        return [(o, VOID) for o in found]
    bodies = doc["body"]
    return list(zip(found, bodies if isinstance(bodies, list) else [bodies], strict=True))


def body(doc: Doc, offset: int) -> bytes | None:
    """The body `doc` holds for `offset` (one of its offsets), VOID for a void offset."""
    if doc.get("void"):
        return VOID
    bodies = doc["body"]
    if not isinstance(bodies, list):
        return bytes(bodies)
    found: bytes = bodies[bisect_left(doc["offset"], offset)]  # a run's offsets ascend
    return found


def current(doc: Doc, epoch: str, now: datetime) -> bool:
    """Whether readers of `epoch` see anything of `doc` (its epoch's, not expired)."""
    return bool(doc["epoch"] == epoch and doc["expire_at"] > now)


def floor_of(doc: Doc) -> int | None:
    """The floor a run sets (its newest offset minus its size); None for a void or a
    version 1 document, which set none."""
    return max(offsets(doc)) - doc["size"] if "size" in doc else None


def visible(docs: list[Doc], epoch: str, now: datetime, floor: int = 0) -> list[tuple[int, Doc]]:
    """What readers see of a channel's documents: each offset of `epoch` still unexpired and
    above the floor, oldest first, with the document holding it. The floor is the highest of
    `floor` and those the runs set: `docs` must include the channel's newest unless `floor`
    was read from it."""
    kept: list[tuple[int, Doc]] = []
    for doc in docs:
        if not current(doc, epoch, now):
            continue
        kept += [(o, doc) for o in offsets(doc)]
        floor = max(floor, floor_of(doc) or 0)
    return sorted((entry for entry in kept if entry[0] > floor), key=lambda entry: entry[0])
