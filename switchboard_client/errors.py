"""The one exception callers catch: a refusal from the server or a local failure."""

from __future__ import annotations

#: Closes after which reconnecting with the same credentials cannot help, unless the server's
#: `disconnect` push said otherwise: unauthorized, forbidden, policy (as static/switchboard.js).
FINAL_CLOSES = frozenset({4001, 4003, 4008})

_CLOSE_CODES = {4001: "unauthorized", 4003: "forbidden", 4008: "limit_exceeded"}


class SwitchboardError(Exception):
    """`code` is one of the protocol's error codes (docs/protocol.md), `message` human text.

    `close_code` is set when the connection ended for good with that WebSocket close code,
    `status` when an HTTP API call failed with that HTTP status, `channel` when a subscription
    was ended by the server.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        close_code: int | None = None,
        status: int | None = None,
        channel: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code
        self.status = status
        self.channel = channel


class ConnectionLost(SwitchboardError):
    """A command whose connection closed before its reply came: code `unavailable`.

    A subclass so the client can tell it from an `unavailable` reply of a server that is up;
    callers may simply catch SwitchboardError.
    """

    def __init__(self, message: str = "connection closed") -> None:
        super().__init__("unavailable", message)


def close_error_code(close_code: int) -> str:
    """The error code a close code stands for."""
    return _CLOSE_CODES.get(close_code, "unavailable")
