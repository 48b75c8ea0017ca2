"""Users and login sessions in MongoDB: the store's part that has nothing to do with channels."""

from __future__ import annotations

import secrets
import time
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.store import schema
from server.store.base import Session, StoreUnavailable, User
from server.store.mongo_io import Ready, outage, when


class MongoUsers:
    def __init__(self, ready: Ready) -> None:
        self._ready = ready

    async def upsert_user(self, provider: str, subject: str, name: str, avatar: str | None) -> User:
        db = await self._ready()
        users = db[schema.USERS]
        identity = {"provider": provider, "subject": subject}
        update = {
            "$set": {"name": name, "avatar": avatar},
            "$setOnInsert": {"_id": secrets.token_hex(12)},
        }
        with outage("saving the user"):
            for _ in range(3):  # racing first logins of one identity: the losers find it
                try:
                    doc = await users.find_one_and_update(
                        identity, update, upsert=True, return_document=ReturnDocument.AFTER
                    )
                except DuplicateKeyError:
                    continue
                # secantusdb sometimes answers a racing upsert without the document
                doc = doc or await users.find_one(identity)
                if doc is not None:
                    return _user(doc)
        raise StoreUnavailable(f"MongoDB saving the user failed: {provider}/{subject} raced")

    async def get_user(self, user_id: str) -> User | None:
        db = await self._ready()
        with outage("reading the user"):
            doc = await db[schema.USERS].find_one({"_id": user_id})
        return None if doc is None else _user(doc)

    async def create_session(self, user_id: str, ttl_s: float) -> Session:
        db = await self._ready()
        session = Session(secrets.token_urlsafe(32), user_id, time.time() + ttl_s)
        with outage("creating the session"):
            await db[schema.SESSIONS].insert_one(
                {"_id": session.id, "user_id": user_id, "expires_at": when(session.expires_at)}
            )
        return session

    async def get_session(self, session_id: str) -> Session | None:
        db = await self._ready()
        with outage("reading the session"):  # the TTL sweep lags: filter on expiry too
            doc = await db[schema.SESSIONS].find_one(
                {"_id": session_id, "expires_at": {"$gt": when(time.time())}}
            )
        return None if doc is None else _session(doc)

    async def delete_session(self, session_id: str) -> Session | None:
        db = await self._ready()
        with outage("deleting the session"):
            doc = await db[schema.SESSIONS].find_one_and_delete({"_id": session_id})
        return None if doc is None else _session(doc)


def _user(doc: dict[str, Any]) -> User:
    return User(doc["_id"], doc["provider"], doc["subject"], doc["name"], doc.get("avatar"))


def _session(doc: dict[str, Any]) -> Session:
    return Session(doc["_id"], doc["user_id"], doc["expires_at"].timestamp())
