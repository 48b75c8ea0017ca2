"""The store interface: durable channel history, users and sessions.

History is kept as publication bodies (the publication's JSON without its offset), so any JSON a
client publishes survives unchanged, whatever the database's own document rules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from server.position import Position


class StoreUnavailable(Exception):
    """The store cannot be reached now; callers reply `unavailable`."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    provider: str
    subject: str
    name: str
    avatar: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user_id: str
    expires_at: float  # seconds since the epoch


class Store(ABC):
    @abstractmethod
    async def start(self) -> None:
        """Connect and create what the store needs (indexes, schema version)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def check(self) -> None:
        """Raise StoreUnavailable with a reason when the store is not usable."""

    # -- history ------------------------------------------------------------------------------

    @abstractmethod
    async def append(
        self, channel: str, epoch: str, offset: int, body: bytes, history_size: int, ttl_s: float
    ) -> None:
        """Store a publication durably, keeping the newest `history_size` for `ttl_s` seconds.

        A publication of a new epoch drops what the channel held under the old one.
        """

    @abstractmethod
    async def history(
        self, channel: str, epoch: str, since: int | None, limit: int, reverse: bool
    ) -> list[tuple[int, bytes]]:
        """Publications of `epoch` as (offset, body), oldest first unless `reverse`.

        With `since`, only offsets after it (forward: the oldest such; reverse: the newest).
        """

    @abstractmethod
    async def position(self, channel: str) -> Position | None:
        """The newest stored publication's position, or None when nothing is kept."""

    # -- users and sessions -------------------------------------------------------------------

    @abstractmethod
    async def upsert_user(self, provider: str, subject: str, name: str, avatar: str | None) -> User:
        """Create or update the one user of a provider identity."""

    @abstractmethod
    async def get_user(self, user_id: str) -> User | None: ...

    @abstractmethod
    async def create_session(self, user_id: str, ttl_s: float) -> Session: ...

    @abstractmethod
    async def get_session(self, session_id: str) -> Session | None:
        """The session if it exists and has not expired."""

    @abstractmethod
    async def delete_session(self, session_id: str) -> Session | None: ...
