"""The broker interface: fan-out between processes and the per-channel offset sequencer.

A broker assigns each publication its offset atomically with sending it, so every process sees
one order per channel. It keeps only the newest position of a channel; when it has none (first use,
or it lost its state), the node seeds it from the store, so offsets continue across restarts.

For channels with history, the broker also keeps how far the store is known to hold the channel
(`stored`) and hands out at most `window` offsets beyond it. A broker that loses its state can
then be seeded past every offset it may have handed out: the store's position plus the window.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from server.position import Position
from server.unavailable import Unavailable


class BrokerUnavailable(Unavailable):
    """The broker cannot be reached now; callers reply `unavailable`."""


class Backlogged(BrokerUnavailable):
    """Too many of the channel's publications are not yet stored: wait, then publish."""


class BrokerHandler(Protocol):
    """What a broker calls back on the IOLoop: the node."""

    def on_publication(self, channel: str, offset: int, epoch: str, body: bytes) -> None: ...

    def on_join_leave(self, channel: str, client_id: str, frame: bytes) -> None: ...

    def on_control(self, message: bytes) -> None: ...

    def on_reconnected(self) -> None:
        """Called after the broker lost its link and resubscribed: messages may be missing."""


class Broker(ABC):
    """Carries messages of subscribed channels to the handler given to `start`."""

    @abstractmethod
    async def start(self, handler: BrokerHandler) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def check(self) -> None:
        """Raise BrokerUnavailable with a reason when the broker is not usable."""

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving a channel: called once per process, for its first local subscriber."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving a channel: called when its last local subscriber left."""

    @abstractmethod
    async def publish(
        self, channel: str, body: bytes, window: int, ttl_s: float
    ) -> Position | None:
        """Assign the next offset, send the publication; None when the channel needs `seed`.

        The channel's position is kept `ttl_s` from now (see `keep`).

        Raises Backlogged when the channel is seeded with `stored` and `window` offsets beyond
        it are handed out already.
        """

    async def publish_many(
        self, channel: str, bodies: list[bytes], window: int, ttl_s: float
    ) -> list[Position] | None:
        """Publish `bodies` in order: the positions of the first n >= 1 of them (the caller
        publishes the rest again), None when the first needs `seed`.

        Raises Backlogged when the first is over the window, BrokerUnavailable when none was
        sent. This default publishes one by one; a broker that can send several at once in order
        (one round trip) overrides it.
        """
        first = await self.publish(channel, bodies[0], window, ttl_s)
        if first is None:
            return None
        done = [first]
        for body in bodies[1:]:
            try:
                pos = await self.publish(channel, body, window, ttl_s)
            except BrokerUnavailable:
                break
            if pos is None:
                break
            done.append(pos)
        return done

    @abstractmethod
    async def position(self, channel: str) -> Position | None:
        """The channel's newest position, or None when the channel needs `seed`."""

    @abstractmethod
    async def seed(
        self, channel: str, position: Position, stored: int | None, ttl_s: float
    ) -> bool:
        """Set a channel's position unless it already has one; True when this call set it.

        `stored`: how far the store holds the channel, for channels with history; None for
        channels without, whose publications are not held back by a window.
        """

    @abstractmethod
    async def keep(self, channels: list[tuple[str, float]]) -> None:
        """Keep these channels' positions for their `ttl_s` from now.

        A position nobody publishes to or keeps is forgotten after its ttl, so a channel
        touched once holds no state for ever; nodes keep the channels they have subscribers of.
        """

    @abstractmethod
    def stored(self, channel: str, position: Position) -> None:
        """Tell the broker that the store holds `position` (batched; an outage is ignored)."""

    @abstractmethod
    async def publish_join_leave(self, channel: str, client_id: str, frame: bytes) -> None:
        """Send a join or leave push to every process's subscribers of `channel`."""

    @abstractmethod
    async def publish_control(self, message: bytes) -> None:
        """Send a control message to every process, this one included."""

    @abstractmethod
    async def cluster_stats(self, local: dict[str, Any]) -> list[dict[str, Any]]:
        """Every live process's figures, given this one's; a single-process broker has one."""
