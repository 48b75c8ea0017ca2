"""Every use of a name Tornado keeps private, in this one module.

After Tornado's own handshake (server/ws/handler.py) the connection leaves Tornado: its
socket goes to a WebSocket (server/ws/websocket.py), with the bytes Tornado's stream read
ahead. That hand-over, and unmasking with Tornado's C helper, use private names, which a
Tornado release may change without notice. They are used here and nowhere else, each listed in
PRIVATE; tests/test_ws_seam.py checks that every one still exists with the signature used here,
so an upgrade that changes one fails that test instead of misbehaving in production.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import tornado.util
from tornado.iostream import IOStream
from tornado.websocket import WebSocketProtocol13

#: (owner, private name, parameters of the function; None for an attribute of instances).
PRIVATE: tuple[tuple[object, str, tuple[str, ...] | None], ...] = (
    (tornado.util, "_websocket_mask", ("mask", "data")),
    (IOStream, "_read_buffer_size", None),
    (WebSocketProtocol13, "_receive_frame_loop", ("self",)),
    # Not called, relied on: it sends the 101, calls handler.open(), then the receive loop.
    (WebSocketProtocol13, "_accept_connection", ("self", "handler")),
)

#: XOR `data` with the 4-byte `mask`, repeated: Tornado's C speedup when it was built.
unmask: Callable[[bytes, bytes], bytes] = tornado.util._websocket_mask


def buffered(stream: IOStream) -> Awaitable[bytes] | None:
    """What the stream read beyond the handshake (frames sent right behind it), if anything."""
    n = stream._read_buffer_size
    return stream.read_bytes(n) if n else None


class Protocol(WebSocketProtocol13):
    """Tornado's protocol object, whose receive loop (a private hook) is `hand_over`.

    Tornado awaits it once the 101 is sent and `handler.open()` has run; when it returns,
    Tornado is done with the connection.
    """

    async def _receive_frame_loop(self) -> None:
        await self.hand_over()

    async def hand_over(self) -> None:
        raise NotImplementedError
