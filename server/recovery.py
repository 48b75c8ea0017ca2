"""Recovery: proving from the store that a client missed nothing between two positions.

A publication is broadcast when the broker gives it its offset and acknowledged once the store
holds it, so an offset can be missing from the store for three reasons: its publication is still
being written (wait for it), it was never acknowledged and never will be (its publisher failed or
died, or a broker that lost its state was seeded past it), or it was trimmed or expired. Waiting
tells the first apart; the store's unique offsets tell the second, as a void that no publication
may take afterwards; the third is any hole below everything the store still keeps.
"""

from __future__ import annotations

import asyncio
import time

from server.config import NamespaceConfig
from server.position import Position
from server.store.base import VOID, Store
from server.waits import woken

#: How long an offset may stay missing before it is made void. Acknowledgements measured under
#: a resubscribe storm came 20-700 ms after the broadcast.
HOLE_WAIT_S = 2.0
#: Polling the store while waiting: first interval and cap.
POLL_FIRST_S = 0.01
POLL_CAP_S = 0.2

Missed = list[tuple[int, bytes]]
#: The position `history` gives a channel that was never used: before its first publication.
NEVER_USED = Position(0, "")


def unstored_window(ns: NamespaceConfig) -> int:
    """How many offsets of a channel may be handed out beyond what the store holds.

    It bounds how far past the store a broker that lost its state must be seeded; the store
    keeps that many offsets beyond `history_size`, so such a seed trims nothing early.
    """
    return min(256, max(64, ns.history_size))


async def missed(
    store: Store,
    channel: str,
    ns: NamespaceConfig,
    since: Position,
    upto: Position,
    hole_wait_s: float = HOLE_WAIT_S,
    stored: asyncio.Event | None = None,
) -> tuple[bool, Missed]:
    """The publications after `since` up to `upto`, and whether they are all of them.

    True only when every offset in between is either delivered here or void. While offsets
    are missing it waits on `stored` (set when this process stores one of the channel's
    publications) and, for other processes' appends, polls with a backoff. Raises
    StoreUnavailable when the store cannot be read.
    """
    if since == NEVER_USED:  # from a `history` reply of a channel that had no state yet
        since = Position(0, upto.epoch)
    if since.epoch != upto.epoch or since.offset > upto.offset:
        return False, []
    if since.offset == upto.offset:
        return True, []
    if not ns.keeps_history:
        return False, []
    deadline = time.monotonic() + hole_wait_s
    delay = POLL_FIRST_S
    while True:
        kept = await store.span(channel, upto.epoch, since.offset, upto.offset)
        holes = _holes(kept, since.offset, upto.offset)
        if not holes or time.monotonic() >= deadline:
            break
        if stored is None:
            await asyncio.sleep(delay)
        else:
            stored.clear()
            await woken(stored, delay)
        delay = min(delay * 2, POLL_CAP_S)
    if holes:
        if not await _voidable(store, channel, upto.epoch, kept, since.offset, holes[0]):
            return False, _pubs(kept, since.offset)
        await store.void(channel, upto.epoch, holes, ns.history_ttl_s)
        # A publication that won its offset before the void is kept: read the range again.
        kept = await store.span(channel, upto.epoch, since.offset, upto.offset)
        if _holes(kept, since.offset, upto.offset):
            return False, _pubs(kept, since.offset)
    return True, _pubs(kept, since.offset)


class _Waiting:
    """Recoveries of one channel waiting for offsets to be stored."""

    __slots__ = ("event", "count")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.count = 0


class Recoveries:
    """The recoveries running in this process, woken whenever it stores one of their
    channel's publications rather than only by polling (other processes' appends are polled
    for)."""

    def __init__(self, store: Store, hole_wait_s: float = HOLE_WAIT_S) -> None:
        self.store = store
        #: How long a recovery waits for a missing offset before making it void.
        self.hole_wait_s = hole_wait_s
        self._waiting: dict[str, _Waiting] = {}

    def stored(self, channel: str) -> None:
        """This process stored a publication of `channel`: wake its recoveries."""
        waiting = self._waiting.get(channel)
        if waiting is not None:
            waiting.event.set()

    async def missed(
        self, channel: str, ns: NamespaceConfig, since: Position, upto: Position
    ) -> tuple[bool, Missed]:
        """`missed` for one channel, woken by `stored`."""
        waiting = self._waiting.setdefault(channel, _Waiting())
        waiting.count += 1
        try:
            return await missed(
                self.store, channel, ns, since, upto, self.hole_wait_s, waiting.event
            )
        finally:
            waiting.count -= 1
            if not waiting.count:
                del self._waiting[channel]


def _holes(kept: list[tuple[int, bytes | None]], since: int, upto: int) -> list[int]:
    """Offsets after `since` up to `upto` that the store holds nothing for."""
    have = {offset for offset, _ in kept}
    if len(have) >= upto - since and all(o in have for o in range(since + 1, upto + 1)):
        return []
    return [o for o in range(since + 1, upto + 1) if o not in have]


async def _voidable(
    store: Store,
    channel: str,
    epoch: str,
    kept: list[tuple[int, bytes | None]],
    since: int,
    hole: int,
) -> bool:
    """Whether the lowest hole lies above something the store keeps.

    Trimming and expiry remove a channel's oldest offsets first, so a hole above a kept offset
    was never stored; one below everything kept may have been stored and removed since.
    """
    if kept and kept[0][0] < hole:
        return True
    lowest = await store.lowest(channel, epoch)
    return lowest is not None and lowest < hole


def _pubs(kept: list[tuple[int, bytes | None]], since: int) -> Missed:
    return [(offset, body) for offset, body in kept if offset > since and body is not VOID]
