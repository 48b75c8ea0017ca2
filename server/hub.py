"""The in-process registry of connections and subscriptions. No I/O, no awaits.

A client here is a connection (server/client.py), seen as `Addressable`: an `id`, a `user` and
`send(frame)`; the hub only decides who gets a frame. While a subscription is being recovered,
frames for it are held in a buffer instead of being sent, so the node can merge them with history
by offset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar


class Addressable(Protocol):
    """What the hub needs of a connection: who it is, and a way to send it a frame."""

    id: str
    user: str | None

    def send(self, frame: bytes) -> None: ...


Buffered = list[tuple[int, bytes]]
#: Bytes a subscription may hold while it is set up: beyond, it ends and the client recovers.
MAX_BUFFERED_BYTES = 1 << 20


class HubObserver(Protocol):
    """Told when connections and channels come and go here (webhooks: server/webhooks/)."""

    def client_added(self, client: Addressable) -> None: ...

    def client_removed(self, client: Addressable) -> None: ...

    def channel_occupied(self, channel: str) -> None: ...

    def channel_vacated(self, channel: str) -> None: ...


class _Held:
    """Frames held for one subscription being set up, bounded in bytes."""

    __slots__ = ("frames", "size", "overflowed")

    def __init__(self) -> None:
        self.frames: Buffered = []
        self.size = 0
        self.overflowed = False

    def add(self, offset: int, frame: bytes, limit: int) -> None:
        if self.overflowed:
            return
        self.size += len(frame)
        if self.size > limit:
            self.overflowed, self.frames = True, []
        else:
            self.frames.append((offset, frame))


C = TypeVar("C", bound=Addressable)


class Hub(Generic[C]):
    """Generic over what it holds, so its callers get their own client type back."""

    def __init__(self, max_buffered_bytes: int = MAX_BUFFERED_BYTES) -> None:
        self._max_buffered = max_buffered_bytes
        self._clients: dict[str, C] = {}
        self._by_user: dict[str, dict[str, C]] = {}
        self._channels: dict[str, dict[C, None]] = {}
        self._buffers: dict[str, dict[C, _Held]] = {}
        self._client_channels: dict[C, set[str]] = {}
        self.observer: HubObserver | None = None

    # -- clients ------------------------------------------------------------------------------

    def add_client(self, client: C) -> None:
        self._clients[client.id] = client
        self._client_channels[client] = set()
        if client.user is not None:
            self._by_user.setdefault(client.user, {})[client.id] = client
        if self.observer is not None:
            self.observer.client_added(client)

    def set_user(self, client: C, user: str | None) -> None:
        """Record a client's (new) user after it authenticated."""
        if self.observer is not None:
            self.observer.client_removed(client)
        self._drop_user(client)
        client.user = user
        if user is not None:
            self._by_user.setdefault(user, {})[client.id] = client
        if self.observer is not None:
            self.observer.client_added(client)

    def remove_client(self, client: C) -> list[str]:
        """Forget a client; returns the channels it left that now have no local subscriber."""
        self._clients.pop(client.id, None)
        self._drop_user(client)
        if self.observer is not None:
            self.observer.client_removed(client)
        emptied = []
        for channel in self._client_channels.pop(client, ()):
            if self._remove(channel, client):
                emptied.append(channel)
        return emptied

    def _drop_user(self, client: C) -> None:
        if client.user is None:
            return
        clients = self._by_user.get(client.user)
        if clients is not None:
            clients.pop(client.id, None)
            if not clients:
                del self._by_user[client.user]

    def client(self, client_id: str) -> C | None:
        return self._clients.get(client_id)

    def user_clients(self, user: str) -> list[C]:
        return list(self._by_user.get(user, {}).values())

    def clients(self) -> Iterable[C]:
        return self._clients.values()

    # -- subscriptions ------------------------------------------------------------------------

    def subscribe(self, channel: str, client: C, buffer: bool = True) -> bool:
        """Add a subscription; True when it is the channel's first local one.

        With `buffer`, frames for it are held until `release`.
        """
        first = channel not in self._channels and channel not in self._buffers
        self._client_channels[client].add(channel)
        if buffer:
            self._buffers.setdefault(channel, {})[client] = _Held()
        else:
            self._channels.setdefault(channel, {})[client] = None
        if first and self.observer is not None:
            self.observer.channel_occupied(channel)
        return first

    def release(self, channel: str, client: C) -> Buffered | None:
        """End a subscription's buffering: frames flow to it directly from now on.

        Returns the held frames, or None when more arrived than a buffer holds: the
        subscription could not keep up while being set up (it stays, still buffering nothing).
        """
        buffers = self._buffers.get(channel)
        held = buffers.pop(client, None) if buffers is not None else None
        if held is None:
            return []
        if not buffers:
            del self._buffers[channel]
        self._channels.setdefault(channel, {})[client] = None
        return None if held.overflowed else held.frames

    def unsubscribe(self, channel: str, client: C) -> bool:
        """Remove a subscription; True when the channel has no local subscriber left."""
        channels = self._client_channels.get(client)
        if channels is None or channel not in channels:
            return False
        channels.discard(channel)
        return self._remove(channel, client)

    def _remove(self, channel: str, client: C) -> bool:
        for table in (self._channels, self._buffers):
            subs = table.get(channel)
            if subs is not None and client in subs:
                del subs[client]
                if not subs:
                    del table[channel]
        emptied = channel not in self._channels and channel not in self._buffers
        if emptied and self.observer is not None:
            self.observer.channel_vacated(channel)
        return emptied

    def is_subscribed(self, channel: str, client: C) -> bool:
        channels = self._client_channels.get(client)
        return channels is not None and channel in channels

    def channels_of(self, client: C) -> set[str]:
        return set(self._client_channels.get(client, ()))

    def channels(self) -> list[str]:
        return list(self._channels.keys() | self._buffers.keys())

    def subscribers(self, channel: str) -> list[C]:
        """Every local subscriber of `channel`, live or still buffering."""
        return [*self._channels.get(channel, ()), *self._buffers.get(channel, ())]

    def subscriber_count(self, channel: str) -> int:
        return len(self._channels.get(channel, ())) + len(self._buffers.get(channel, ()))

    # -- delivery -----------------------------------------------------------------------------

    def broadcast(self, channel: str, offset: int, frame: bytes, exclude: str | None = None) -> int:
        """Send one encoded frame to every subscriber of `channel`; returns how many got it.

        `offset` tags the frame for buffered subscriptions; -1 marks frames that are not
        publications (join, leave), which a buffer always delivers.
        """
        sent = 0
        subs = self._channels.get(channel)
        if subs and exclude is None:
            for client in subs:
                client.send(frame)
            sent = len(subs)
        elif subs:
            for client in subs:
                if client.id != exclude:
                    client.send(frame)
                    sent += 1
        buffers = self._buffers.get(channel)
        if buffers:
            for client, held in buffers.items():
                if client.id != exclude:
                    held.add(offset, frame, self._max_buffered)
        return sent

    # -- figures ------------------------------------------------------------------------------

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def subscription_count(self) -> int:
        return sum(len(c) for c in self._client_channels.values())

    @property
    def channel_count(self) -> int:
        return len(self._channels.keys() | self._buffers.keys())
