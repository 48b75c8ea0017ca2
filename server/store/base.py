"""The store interface: durable channel history, users and sessions.

History is kept as publication bodies (the publication's JSON without its offset), so any JSON a
client publishes survives unchanged, whatever the database's own document rules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server.position import Position
from server.unavailable import Unavailable


class StoreUnavailable(Unavailable):
    """The store cannot be reached now; callers reply `unavailable`."""


class StoreConflict(StoreUnavailable):
    """The offset was given up as void before this publication reached the store.

    Its publisher must not acknowledge it: a recovery already told subscribers that nothing
    acknowledged stands at that offset.
    """


#: The body `span` gives a void offset: one that holds no acknowledged publication, ever.
VOID = None

#: What a write refused: the index of each item not stored, with why.
Refused = dict[int, BaseException]

#: Settles a claim (Store.claim): True makes its offsets void, False gives the claim up.
Settle = Callable[[bool], Awaitable[None]]


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

    async def append(
        self, channel: str, epoch: str, offset: int, body: bytes, history_size: int, ttl_s: float
    ) -> None:
        """Store one publication (`append_many`); raise why it was not stored."""
        refused = await self.append_many(channel, epoch, [(offset, body)], history_size, ttl_s)
        if refused:
            raise refused[0]

    @abstractmethod
    async def append_many(
        self,
        channel: str,
        epoch: str,
        items: list[tuple[int, bytes]],
        history_size: int,
        ttl_s: float,
    ) -> Refused:
        """Store publications (offset, body) of one channel durably, keeping the newest
        `history_size` for `ttl_s` seconds; returns those not stored, by index.

        A publication of a new epoch drops what the channel held under the old one. One is
        refused with StoreConflict when its offset was made void first (`void`); a retry of a
        publication already stored succeeds. Raises StoreUnavailable when the store cannot
        be reached at all.
        """

    @abstractmethod
    async def history(
        self, channel: str, epoch: str, since: int | None, limit: int, reverse: bool
    ) -> list[tuple[int, bytes]]:
        """Publications of `epoch` as (offset, body), oldest first unless `reverse`.

        With `since`, only offsets after it (forward: the oldest such; reverse: the newest).
        """

    @abstractmethod
    async def span(
        self, channel: str, epoch: str, since: int, upto: int
    ) -> list[tuple[int, bytes | None]]:
        """What is kept of offsets `since` to `upto` (both included), oldest first.

        Void offsets come with the body VOID; offsets not (yet) stored are absent. Recovery
        reads this to prove a range complete.
        """

    @abstractmethod
    async def lowest(self, channel: str, epoch: str) -> int | None:
        """The oldest offset of `epoch` still kept (void or not), or None."""

    @abstractmethod
    async def void(self, channel: str, epoch: str, offsets: list[int], ttl_s: float) -> None:
        """Mark offsets that are still not stored as void: no publication may take them now.

        Atomic per offset against `append`: of a void and a publication racing for one
        offset, exactly one is kept.
        """

    @abstractmethod
    async def reserve(self, channel: str, epoch: str, offset: int) -> None:
        """Record that offsets up to `offset` of `epoch` may be handed out.

        A broker that lost its state is seeded past every offset it may have handed out, so
        no position is ever used twice (`position` counts reservations).
        """

    async def claim(self, channel: str, epoch: str, offsets: list[int], ttl_s: float) -> Settle:
        """Reserve up to the last of `offsets` (ascending, not empty) and claim them for a void,
        made by the returned call once the broker is seeded past them (or given up if another
        process seeded it first). A store that can write the reservation and the claim at once
        saves a seed a round trip over `reserve` then `void`."""
        await self.reserve(channel, epoch, offsets[-1])

        async def settle(void: bool) -> None:
            if void:
                await self.void(channel, epoch, offsets, ttl_s)

        return settle

    @abstractmethod
    async def position(self, channel: str) -> Position | None:
        """The newest stored or reserved position, or None when no publication is kept."""

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
