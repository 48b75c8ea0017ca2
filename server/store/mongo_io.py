"""What every MongoDB call of the store shares: driver errors become StoreUnavailable (so an
outage costs replies, never the process), and times become BSON dates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from server.store.base import StoreUnavailable

Db = AsyncDatabase[dict[str, Any]]
#: The database once its schema is made (MongoStore._ready): every part awaits it first.
Ready = Callable[[], Awaitable[Db]]
DUPLICATE_KEY = 11000


def when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def reason(exc: PyMongoError) -> str:
    """The first line of a driver error, without the topology dump of a selection timeout."""
    text = str(exc).split(", Timeout:")[0].split("\n")[0]
    return text[:200] or type(exc).__name__


@contextmanager
def outage(what: str) -> Iterator[None]:
    try:
        yield
    except PyMongoError as exc:
        raise StoreUnavailable(f"MongoDB {what} failed: {reason(exc)}") from exc


async def insert_once(coll: Any, docs: list[dict[str, Any]]) -> None:
    """Insert `docs`; one already there (the same `_id`: the same document, written again) is
    kept as it is. Any other write error, a duplicate of another index's key included, is
    raised."""
    try:
        await coll.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if not all(_same_id(e) for e in exc.details.get("writeErrors", [])):
            raise


def _same_id(error: dict[str, Any]) -> bool:
    if error.get("code") != DUPLICATE_KEY:
        return False
    pattern = error.get("keyPattern")  # MongoDB 4.4 and later; before, only the message
    return list(pattern) == ["_id"] if pattern else "index: _id_ " in error.get("errmsg", "")
