"""One channel's subscription: it survives reconnects until `unsubscribe()`.

Publications go to `on_publication` or, without one, to a queue read with `async for`. Either
way each is delivered once and in order: the subscription remembers the last offset it
delivered, resubscribes `since` it, and drops anything at or below it.

The queue is bounded (`max_queue`). A reader that falls that far behind is not fed further, nor
are publications dropped silently: once it has read half the queue, the subscription starts
again `since` the last publication queued, and the server recovers the rest from history (a
`recovery` event says whether it could).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from switchboard_client.errors import SwitchboardError
from switchboard_client.types import JoinLeave, Position, Publication, Recovery

if TYPE_CHECKING:
    from switchboard_client.subscriptions import Subscriptions

OnPublication = Callable[[Publication], object]
OnJoinLeave = Callable[[JoinLeave], object]
OnRecovery = Callable[[Recovery], object]


class Subscription:
    def __init__(
        self,
        owner: Subscriptions,
        channel: str,
        on_publication: OnPublication | None,
        since: Position | None,
        on_join: OnJoinLeave | None,
        on_leave: OnJoinLeave | None,
        on_recovery: OnRecovery | None,
        max_queue: int,
    ) -> None:
        self._owner = owner
        self.channel = channel
        self.on_publication = on_publication
        self.on_join = on_join
        self.on_leave = on_leave
        self.on_recovery = on_recovery
        #: the last publication delivered (None: none yet, start from the channel's present)
        self.offset: int | None = since["offset"] if since else None
        self.epoch: str | None = since["epoch"] if since else None
        #: the server confirmed it on the current connection
        self.active = False
        #: the outcome of the last resubscribe with `since`: None until there was one
        self.recovered: bool | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready.add_done_callback(_observe)
        self._queue: collections.deque[Publication] = collections.deque()
        self._max_queue = max_queue
        self._behind = False  # the queue filled up: nothing queued until the reader catches up
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: SwitchboardError | None = None

    @property
    def position(self) -> Position | None:
        """Where the subscription is: resubscribing `since` this misses nothing."""
        if self.offset is None or self.epoch is None:
            return None
        return {"offset": self.offset, "epoch": self.epoch}

    async def unsubscribe(self) -> None:
        await self._owner.unsubscribe(self)

    # -- the client's side ---------------------------------------------------------------------

    def deliver(self, pub: Publication) -> None:
        """Deliver a publication unless it was delivered already (offsets only grow)."""
        if self._behind or (self.offset is not None and pub["offset"] <= self.offset):
            return
        if self.on_publication is None and len(self._queue) >= self._max_queue:
            self._behind = True
            return
        self.offset = pub["offset"]
        if self.on_publication is not None:
            self._owner.callbacks.invoke(self.on_publication, pub)
            return
        self._queue.append(pub)
        self._wake()

    def recovery(self, recovered: bool) -> Recovery:
        self.recovered = recovered
        info: Recovery = {"channel": self.channel, "recovered": recovered}
        if self.on_recovery is not None:
            self._owner.callbacks.invoke(self.on_recovery, info)
        return info

    def confirmed(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def end(self, error: SwitchboardError | None) -> None:
        """No more publications: iteration stops after the queue, raising `error` if any."""
        self.active = False
        if self._ended:
            return
        self._ended = True
        self._error = error
        if not self.ready.done():
            self.ready.set_exception(
                error or SwitchboardError("unavailable", f"unsubscribed from {self.channel}")
            )
        self._wake()

    # -- iteration -------------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        if self.on_publication is not None:
            raise TypeError("this subscription delivers to its on_publication callback")
        return self

    async def __anext__(self) -> Publication:
        while not self._queue:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        pub = self._queue.popleft()
        if self._behind and len(self._queue) <= self._max_queue // 2 and not self._ended:
            self._behind = False
            self._owner.restart(self)
        return pub

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} at {self.position}>"


def _observe(future: asyncio.Future[Any]) -> None:
    """Nobody awaiting a subscription's failure is no reason for an asyncio warning."""
    if not future.cancelled():
        future.exception()
