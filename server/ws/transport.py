"""What a connection needs of its socket: the one interface between protocol and transport."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """A connection's way out; `server.ws.outbox.Outbox` is the one implementation that runs.

    `send` is the one send path: the connection keeps the bound method and calls it once per
    frame, so nothing sits between a delivery and the queue.
    """

    def send(self, frame: bytes) -> None:
        """Queue one encoded WebSocket frame (see server.ws.frame)."""

    def close(self, code: int, reason: str) -> None:
        """Close with `code` after every frame queued so far."""
