"""Frames the server sends, built once as bytes, and the rules for close frames (RFC 6455).

Server frames are never masked, so one encoded frame serves every subscriber of a channel.

>>> text(b"hi")
b'\\x81\\x02hi'
>>> bytes(text_payload(text(b"hi")))
b'hi'
>>> close(1000, "bye")
b'\\x88\\x05\\x03\\xe8bye'
>>> parse_close(b"\\x03\\xe7")
Traceback (most recent call last):
...
server.ws.frame.ProtocolViolation: close code 999 is not allowed
"""

from __future__ import annotations

import struct

TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING_OPCODE = 0x9
PONG = 0xA

#: An empty ping: what the keep-alive sweep sends to quiet connections.
PING = b"\x89\x00"
#: Control frames carry at most this many payload bytes (§5.5).
MAX_CONTROL_PAYLOAD = 125

#: Close codes a peer may send (§7.4.1, §7.4.2 and the IANA registry: 1012-1014). 1004, 1005,
#: 1006 and 1015 are reserved and never sent; 1016-2999 are unassigned; 3000-4999 belong to
#: libraries and applications.
_SENDABLE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


class ProtocolViolation(Exception):
    """The client broke RFC 6455; `code` is the close code that fails the connection."""

    def __init__(self, reason: str, code: int = 1002) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def encode(opcode: int, payload: bytes) -> bytes:
    """A single unmasked, final frame of `opcode` carrying `payload`."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def text(payload: bytes) -> bytes:
    """A single unmasked, final text frame carrying `payload` (UTF-8: the caller's promise)."""
    n = len(payload)
    if n < 126:
        return b"\x81" + bytes((n,)) + payload
    if n < 65536:
        return b"\x81\x7e" + struct.pack("!H", n) + payload
    return b"\x81\x7f" + struct.pack("!Q", n) + payload


def text_payload(frame: bytes) -> memoryview | None:
    """The payload of a text frame built by `text`, or None for any other frame (pings)."""
    if not frame or frame[0] != 0x81:
        return None
    n = frame[1]
    return memoryview(frame)[2 if n < 126 else 4 if n == 126 else 10 :]


def close(code: int | None, reason: str | None = None) -> bytes:
    """A close frame; the reason is cut to fit the 125-byte limit (on a character boundary)."""
    if code is None:
        return b"\x88\x00"
    data = (reason or "").encode()
    if len(data) > MAX_CONTROL_PAYLOAD - 2:
        data = data[: MAX_CONTROL_PAYLOAD - 2].decode(errors="ignore").encode()
    return encode(CLOSE, struct.pack("!H", code) + data)


def valid_close_code(code: int) -> bool:
    """Whether a peer may send `code` in a close frame (§7.4)."""
    return code in _SENDABLE or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int | None, str | None]:
    """The code and reason of a client's close frame; ProtocolViolation when either is invalid."""
    if not payload:
        return None, None
    if len(payload) == 1:
        raise ProtocolViolation("close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise ProtocolViolation(f"close code {code} is not allowed")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation("close reason is not UTF-8", 1007) from None
    return code, reason
