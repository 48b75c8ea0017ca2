"""WebSocket frames built once and written as bytes to many connections (RFC 6455, server side).

Server frames are never masked, so one encoded frame serves every subscriber of a channel.
"""

from __future__ import annotations

import struct


def text(payload: bytes) -> bytes:
    """A single unmasked, final text frame carrying `payload` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        return b"\x81" + bytes((n,)) + payload
    if n < 65536:
        return b"\x81\x7e" + struct.pack("!H", n) + payload
    return b"\x81\x7f" + struct.pack("!Q", n) + payload
