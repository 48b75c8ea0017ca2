"""The interfaces between a connection's protocol state and its WebSocket.

`Transport` is what the protocol side calls (send, close); `TransportOwner` is what the WebSocket
calls back (messages, pings and pongs, the end). server.ws.websocket.WebSocket implements
Transport; server.client.Connection and the echo endpoint implement TransportOwner. (The "peer"
of the ws/ comments is the other end of the socket, never one of these.)
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol


class Transport(Protocol):
    """A connection's way out; `server.ws.websocket.WebSocket` is the one implementation.

    `send` is the one send path: the connection keeps the bound method and calls it once per
    frame, so nothing sits between a delivery and the queue.
    """

    def send(self, frame: bytes) -> None:
        """Queue one encoded WebSocket frame (see server.ws.frame)."""

    def reply(self, frame: bytes) -> None:
        """Queue a frame the client is waiting for (a reply): it leaves without delay."""

    def close(self, code: int, reason: str) -> None:
        """Close with `code` after every frame queued so far."""


class TransportOwner(Protocol):
    """What a WebSocket tells the connection it carries (its owner)."""

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """A whole message. An awaitable result holds further messages until it is done."""

    def on_ping(self) -> None:
        """The client sent a ping (already answered with a pong)."""

    def on_pong(self) -> None:
        """The client answered a ping."""

    def on_closed(self) -> None:
        """The connection is gone (called once); nothing sent after this goes anywhere."""

    def too_slow(self) -> None:
        """The client stopped reading: its unsent bytes passed max_pending_bytes.

        Nothing more is queued for it; the close frame follows the last whole frame.
        """
