"""The in-memory store: history, users and sessions of one process, lost on exit."""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from server.position import Position
from server.store.base import Session, Store, User


@dataclass(slots=True)
class _History:
    epoch: str
    pubs: deque[tuple[int, bytes, float]] = field(default_factory=deque)  # offset, body, expiry


class MemoryStore(Store):
    def __init__(self) -> None:
        self._history: dict[str, _History] = {}
        self._users: dict[str, User] = {}
        self._identities: dict[tuple[str, str], str] = {}
        self._sessions: dict[str, Session] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def check(self) -> None:
        pass

    def _live(self, channel: str) -> _History | None:
        h = self._history.get(channel)
        if h is None:
            return None
        now = time.time()
        while h.pubs and h.pubs[0][2] <= now:
            h.pubs.popleft()
        return h

    async def append(
        self, channel: str, epoch: str, offset: int, body: bytes, history_size: int, ttl_s: float
    ) -> None:
        h = self._live(channel)
        if h is None or h.epoch != epoch:
            h = self._history[channel] = _History(epoch)
        h.pubs.append((offset, body, time.time() + ttl_s))
        while len(h.pubs) > history_size:
            h.pubs.popleft()

    async def history(
        self, channel: str, epoch: str, since: int | None, limit: int, reverse: bool
    ) -> list[tuple[int, bytes]]:
        h = self._live(channel)
        if h is None or h.epoch != epoch:
            return []
        pubs = [(o, b) for o, b, _ in h.pubs if since is None or o > since]
        return pubs[::-1][:limit] if reverse else pubs[:limit]

    async def position(self, channel: str) -> Position | None:
        h = self._live(channel)
        if h is None or not h.pubs:
            return None
        return Position(h.pubs[-1][0], h.epoch)

    async def upsert_user(self, provider: str, subject: str, name: str, avatar: str | None) -> User:
        user_id = self._identities.setdefault((provider, subject), secrets.token_hex(12))
        user = self._users[user_id] = User(user_id, provider, subject, name, avatar)
        return user

    async def get_user(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    async def create_session(self, user_id: str, ttl_s: float) -> Session:
        session = Session(secrets.token_urlsafe(32), user_id, time.time() + ttl_s)
        self._sessions[session.id] = session
        return session

    async def get_session(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None and session.expires_at <= time.time():
            del self._sessions[session_id]
            return None
        return session

    async def delete_session(self, session_id: str) -> Session | None:
        return self._sessions.pop(session_id, None)
