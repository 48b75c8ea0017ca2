"""Every use of a name Tornado keeps private, in this one module.

The transport is fast because it goes around parts of Tornado's WebSocket: it reads the socket
itself (one `recv` per readable event instead of two or three `read_bytes` per frame), unmasks
with Tornado's C helper, and drops per-connection state Tornado keeps. Those are private names,
which a Tornado release may change without notice. They are used here and nowhere else, each
listed in PRIVATE; tests/test_ws_seam.py checks that every one still exists with the signature
used here, so an upgrade that changes one fails that test instead of misbehaving in production.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import tornado.httputil
import tornado.util
from tornado.iostream import IOStream
from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13

#: (owner, private name, parameters of the function; None for an attribute of instances).
PRIVATE: tuple[tuple[object, str, tuple[str, ...] | None], ...] = (
    (tornado.util, "_websocket_mask", ("mask", "data")),
    (IOStream, "_read_buffer_size", None),
    (IOStream, "_handle_events", ("self", "fd", "events")),
    (WebSocketProtocol13, "_receive_frame_loop", ("self",)),
    (WebSocketProtocol, "_abort", ("self",)),
    (WebSocketProtocol, "_run_callback", ("self", "callback", "*args", "**kwargs")),
    (WebSocketHandler, "_detach_stream", ("self",)),
    # Not called, relied on: it sets the stream, calls handler.open(), then the receive loop.
    (WebSocketProtocol13, "_accept_connection", ("self", "handler")),
    (RequestHandler, "_headers", None),
)

#: XOR `data` with the 4-byte `mask`, repeated: Tornado's C speedup when it was built.
unmask: Callable[[bytes, bytes], bytes] = tornado.util._websocket_mask

#: Let the stream handle events on its socket (its pending writes) once the reader owns them.
stream_events: Callable[[IOStream, socket.socket | int, int], None] = IOStream._handle_events

#: Shared stand-ins for request state dropped after the upgrade; nothing writes to them.
_NO_HEADERS = tornado.httputil.HTTPHeaders()
_NO_ARGUMENTS: dict[str, list[bytes]] = {}


def buffered(stream: IOStream) -> Awaitable[bytes] | None:
    """What the stream read before the upgrade was complete (frames sent with the handshake)."""
    n = stream._read_buffer_size
    return stream.read_bytes(n) if n else None


class Protocol(WebSocketProtocol13):
    """Tornado's protocol object, whose receive loop (a private hook) is `receive`.

    TLS streams and permessage-deflate keep Tornado's own loop: Switchboard serves neither, and
    a TLS socket's bytes cannot be read around the stream.
    """

    async def _receive_frame_loop(self) -> None:
        if self.params.compression_options is not None or type(self.stream) is not IOStream:
            await super()._receive_frame_loop()
        else:
            await self.receive()

    async def receive(self) -> None:
        raise NotImplementedError

    #: Drop the TCP connection now, without a close frame (both sides count as terminated).
    abort = WebSocketProtocol._abort
    #: Call a handler callback the way Tornado does: an exception is logged and aborts the
    #: connection; an awaitable result comes back as a Future that never raises.
    run_callback = WebSocketProtocol._run_callback


class Handler(WebSocketHandler):
    """Tornado's WebSocket handler, lighter per connection once upgraded."""

    def _detach_stream(self) -> IOStream:
        """Hand the stream to the WebSocket protocol, without Tornado's per-instance guards.

        Tornado replaces write, finish and five other methods on each handler with ones that
        raise, which adds seven entries to every connection's __dict__ (about 1.5 KB); this
        handler never calls them after the upgrade.
        """
        return self.detach()

    def drop_request_state(self) -> None:
        """Forget what only the handshake needed: per connection it is about 1 KB.

        The headers, and the query with its copies of the token (uri, query, arguments), are
        read by the upgrade alone; logs need only the method, path and address.
        """
        self.ui = None  # type: ignore[assignment]  # template helpers: a socket renders nothing
        self._headers = _NO_HEADERS  # the 101 response's, already sent
        req = self.request
        req.headers = _NO_HEADERS
        req.uri = req.path
        req.query = ""
        req.arguments = req.query_arguments = req.body_arguments = _NO_ARGUMENTS
