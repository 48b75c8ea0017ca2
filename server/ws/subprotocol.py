"""The WebSocket subprotocols of /ws: `switchboard.json` (the default) and `switchboard.msgpack`.

A client that offers no subprotocol, or only ones the server does not know, speaks JSON in text
frames as ever (the upgrade then names no subprotocol). One that offers `switchboard.msgpack`
(before `switchboard.json`, when it offers both) speaks MessagePack in binary frames: its
commands are decoded by server.codec, and what the server sends it passes through
`MsgpackTransport`, which swaps each JSON text frame for its MessagePack translation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from server import codec, protocol
from server.codec import Transcoder
from server.protocol import Command
from server.ws.transport import Transport

#: What the server speaks, by subprotocol name.
KNOWN = (codec.JSON, codec.MSGPACK)


def select(offered: Iterable[str]) -> str | None:
    """The first subprotocol the client offered that the server speaks, or None (JSON)."""
    for name in offered:
        if name in KNOWN:
            return name
    return None


def parser(selected: str | None) -> Callable[[str | bytes], Command]:
    """How a connection with this subprotocol decodes its commands."""
    return codec.parse_command if selected == codec.MSGPACK else protocol.parse_command


class MsgpackTransport:
    """A Transport that sends MessagePack binary frames in place of the JSON text frames the
    connection and the node build; one Transcoder per process encodes each frame once."""

    __slots__ = ("_inner", "_send", "_transcoder")

    def __init__(self, inner: Transport, transcoder: Transcoder) -> None:
        self._inner = inner
        self._send = inner.send
        self._transcoder = transcoder

    def send(self, frame: bytes) -> None:
        self._send(self._transcoder.binary(frame))

    def reply(self, frame: bytes) -> None:
        self._inner.reply(self._transcoder.binary(frame))

    def close(self, code: int, reason: str) -> None:
        self._inner.close(code, reason)


def wrap(transport: Transport, selected: str | None, transcoder: Transcoder) -> Transport:
    """The transport a connection with this subprotocol writes to."""
    return MsgpackTransport(transport, transcoder) if selected == codec.MSGPACK else transport
