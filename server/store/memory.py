"""The in-memory store: history, users and sessions of one process, lost on exit."""

from __future__ import annotations

import bisect
import secrets
import time
from dataclasses import dataclass, field

from server.position import Position
from server.store.base import VOID, Refused, Session, Store, StoreConflict, User

#: How often writes look for channels whose whole history expired.
SWEEP_S = 10.0


@dataclass(slots=True)
class _History:
    """One channel's kept offsets: body (VOID for a void offset) and expiry, by offset."""

    epoch: str
    entries: dict[int, tuple[bytes | None, float]] = field(default_factory=dict)
    offsets: list[int] = field(default_factory=list)  # sorted
    reserved: int = 0

    def put(self, offset: int, body: bytes | None, expires: float) -> None:
        if offset not in self.entries:
            bisect.insort(self.offsets, offset)
        self.entries[offset] = (body, expires)

    def trim(self, keep: int) -> None:
        """Keep the offsets above the newest minus `keep`, as MongoDB trimming does."""
        floor = self.offsets[-1] - keep if self.offsets else 0
        cut = bisect.bisect_right(self.offsets, floor)
        for offset in self.offsets[:cut]:
            del self.entries[offset]
        del self.offsets[:cut]


class MemoryStore(Store):
    def __init__(self) -> None:
        self._history: dict[str, _History] = {}
        self._swept = time.monotonic()
        self._users: dict[str, User] = {}
        self._identities: dict[tuple[str, str], str] = {}
        self._sessions: dict[str, Session] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def check(self) -> None:
        pass

    def _live(self, channel: str, epoch: str | None = None) -> _History | None:
        """The channel's history without expired entries (of `epoch`, when given)."""
        h = self._history.get(channel)
        if h is None or (epoch is not None and h.epoch != epoch):
            return None
        now, cut = time.time(), 0
        while cut < len(h.offsets) and h.entries[h.offsets[cut]][1] <= now:
            del h.entries[h.offsets[cut]]
            cut += 1
        del h.offsets[:cut]
        return h

    def _sweep(self) -> None:
        """Forget channels whose history all expired (every SWEEP_S, on a write)."""
        now = time.monotonic()
        if now - self._swept < SWEEP_S:
            return
        self._swept = now
        for channel in list(self._history):
            h = self._live(channel)
            if h is not None and not h.offsets:
                del self._history[channel]

    def _of_epoch(self, channel: str, epoch: str) -> _History:
        """The channel's history of `epoch`; a new epoch drops what the old one held."""
        self._sweep()
        h = self._live(channel)
        if h is None or h.epoch != epoch:
            h = self._history[channel] = _History(epoch)
        return h

    async def append_many(
        self,
        channel: str,
        epoch: str,
        items: list[tuple[int, bytes]],
        history_size: int,
        ttl_s: float,
    ) -> Refused:
        h = self._of_epoch(channel, epoch)
        expires = time.time() + ttl_s
        refused: Refused = {}
        for i, (offset, body) in enumerate(items):
            kept = h.entries.get(offset)
            if kept is not None and kept[0] is VOID:
                refused[i] = StoreConflict(
                    f"offset {offset} of {channel} was made void before it was stored"
                )
            else:
                h.put(offset, body, expires)
        h.trim(history_size)
        return refused

    async def history(
        self, channel: str, epoch: str, since: int | None, limit: int, reverse: bool
    ) -> list[tuple[int, bytes]]:
        h = self._live(channel, epoch)
        if h is None:
            return []
        pubs = []
        for o in reversed(h.offsets) if reverse else h.offsets:
            body = h.entries[o][0]
            if body is not VOID and (since is None or o > since):
                pubs.append((o, body))
                if len(pubs) == limit:
                    break
        return pubs

    async def span(
        self, channel: str, epoch: str, since: int, upto: int
    ) -> list[tuple[int, bytes | None]]:
        h = self._live(channel, epoch)
        if h is None:
            return []
        lo, hi = bisect.bisect_left(h.offsets, since), bisect.bisect_right(h.offsets, upto)
        return [(o, h.entries[o][0]) for o in h.offsets[lo:hi]]

    async def lowest(self, channel: str, epoch: str) -> int | None:
        h = self._live(channel, epoch)
        return h.offsets[0] if h is not None and h.offsets else None

    async def void(self, channel: str, epoch: str, offsets: list[int], ttl_s: float) -> None:
        h = self._of_epoch(channel, epoch)
        expires = time.time() + ttl_s
        for offset in offsets:
            if offset not in h.entries:
                h.put(offset, VOID, expires)

    async def reserve(self, channel: str, epoch: str, offset: int) -> None:
        h = self._live(channel, epoch)
        if h is not None:
            h.reserved = max(h.reserved, offset)

    async def position(self, channel: str) -> Position | None:
        h = self._live(channel)
        if h is None or not h.offsets:
            return None
        return Position(max(h.offsets[-1], h.reserved), h.epoch)

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
