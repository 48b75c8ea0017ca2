"""The in-process registry of connections and subscriptions. No I/O, no awaits.

A client here is anything with an `id`, a `user` and `send(frame)`; the hub only decides who gets
a frame. While a subscription is being recovered, frames for it are held in a buffer instead of
being sent, so the node can merge them with history by offset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Subscriber(Protocol):
    id: str
    user: str | None

    def send(self, frame: bytes) -> None: ...


Buffered = list[tuple[int, bytes]]


class HubObserver(Protocol):
    """Told when connections and channels come and go here (webhooks: server/webhooks/)."""

    def client_added(self, client: Subscriber) -> None: ...

    def client_removed(self, client: Subscriber) -> None: ...

    def channel_occupied(self, channel: str) -> None: ...

    def channel_vacated(self, channel: str) -> None: ...


class Hub:
    def __init__(self) -> None:
        self._clients: dict[str, Subscriber] = {}
        self._by_user: dict[str, dict[str, Subscriber]] = {}
        self._channels: dict[str, dict[Subscriber, None]] = {}
        self._buffers: dict[str, dict[Subscriber, Buffered]] = {}
        self._client_channels: dict[Subscriber, set[str]] = {}
        self.observer: HubObserver | None = None

    # -- clients ------------------------------------------------------------------------------

    def add_client(self, client: Subscriber) -> None:
        self._clients[client.id] = client
        self._client_channels[client] = set()
        if client.user is not None:
            self._by_user.setdefault(client.user, {})[client.id] = client
        if self.observer is not None:
            self.observer.client_added(client)

    def set_user(self, client: Subscriber, user: str | None) -> None:
        """Record a client's (new) user after it authenticated."""
        if self.observer is not None:
            self.observer.client_removed(client)
        self._drop_user(client)
        client.user = user
        if user is not None:
            self._by_user.setdefault(user, {})[client.id] = client
        if self.observer is not None:
            self.observer.client_added(client)

    def remove_client(self, client: Subscriber) -> list[str]:
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

    def _drop_user(self, client: Subscriber) -> None:
        if client.user is None:
            return
        clients = self._by_user.get(client.user)
        if clients is not None:
            clients.pop(client.id, None)
            if not clients:
                del self._by_user[client.user]

    def client(self, client_id: str) -> Subscriber | None:
        return self._clients.get(client_id)

    def user_clients(self, user: str) -> list[Subscriber]:
        return list(self._by_user.get(user, {}).values())

    def clients(self) -> Iterable[Subscriber]:
        return self._clients.values()

    # -- subscriptions ------------------------------------------------------------------------

    def subscribe(self, channel: str, client: Subscriber, buffer: bool = True) -> bool:
        """Add a subscription; True when it is the channel's first local one.

        With `buffer`, frames for it are held until `release`.
        """
        first = channel not in self._channels and channel not in self._buffers
        self._client_channels[client].add(channel)
        if buffer:
            self._buffers.setdefault(channel, {})[client] = []
        else:
            self._channels.setdefault(channel, {})[client] = None
        if first and self.observer is not None:
            self.observer.channel_occupied(channel)
        return first

    def release(self, channel: str, client: Subscriber) -> Buffered:
        """End a subscription's buffering: frames flow to it directly from now on."""
        buffers = self._buffers.get(channel)
        held = buffers.pop(client, None) if buffers is not None else None
        if held is None:
            return []
        if not buffers:
            del self._buffers[channel]
        self._channels.setdefault(channel, {})[client] = None
        return held

    def unsubscribe(self, channel: str, client: Subscriber) -> bool:
        """Remove a subscription; True when the channel has no local subscriber left."""
        channels = self._client_channels.get(client)
        if channels is None or channel not in channels:
            return False
        channels.discard(channel)
        return self._remove(channel, client)

    def _remove(self, channel: str, client: Subscriber) -> bool:
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

    def is_subscribed(self, channel: str, client: Subscriber) -> bool:
        channels = self._client_channels.get(client)
        return channels is not None and channel in channels

    def channels_of(self, client: Subscriber) -> set[str]:
        return set(self._client_channels.get(client, ()))

    def channels(self) -> list[str]:
        return list(self._channels.keys() | self._buffers.keys())

    def subscribers(self, channel: str) -> list[Subscriber]:
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
                    held.append((offset, frame))
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
