"""The Tornado half of a WebSocket endpoint, for the upgrades server/ws/listener.py leaves to it.

Requests that are not plain (a head split over several reads, a keep-alive connection, a
session cookie to look up, one from a trusted proxy over its limits) and every refusal are
served by Tornado's WebSocketHandler as usual. Once Tornado has sent the 101, the connection
leaves it: the socket and whatever Tornado read beyond the handshake go to a WebSocket, which
the endpoint opens just as it opens the connections the listener upgrades itself (with the
subprotocol Tornado's handler chose). Nothing of the handler, its request or
its stream is kept.

A subclass sets `endpoint` in `initialize` and `admitted` (what `Endpoint.open` gets) before
calling this `get`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.websocket
from tornado.iostream import IOStream
from tornado.websocket import WebSocketProtocol, WebSocketProtocol13

from server.ws import seam
from server.ws.listener import Endpoint
from server.ws.websocket import WebSocket

log = logging.getLogger("switchboard.ws")


class SocketHandler(tornado.websocket.WebSocketHandler):
    endpoint: Endpoint
    #: What the endpoint opens the connection with (set by the subclass's checks).
    admitted: Any = None

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        """Tornado's RFC 6455 protocol, handing the connection over after the handshake."""
        tornados = super().get_websocket_protocol()
        if not isinstance(tornados, WebSocketProtocol13):
            return tornados  # None for an unsupported version: Tornado answers 426
        return HandOver(self, False, tornados.params)

    def open(self, *args: str, **kwargs: str) -> None:
        """Nothing here: the endpoint opens the connection once it is handed over."""


class HandOver(seam.Protocol):
    async def hand_over(self) -> None:
        stream = self.stream
        handler = self.handler
        assert isinstance(handler, SocketHandler)
        if type(stream) is not IOStream:  # TLS: Switchboard terminates none itself
            log.warning("WebSocket over TLS is not served: terminate TLS in front")
            stream.close()
            return
        if stream.writing():  # the 101 is still on its way: let it finish first
            await stream.write(b"")
        early = b""
        pending = seam.buffered(stream)
        while pending is not None:
            early += await pending
            pending = seam.buffered(stream)
        if stream.closed():
            return
        sock = stream.socket
        stream.io_loop.remove_handler(sock)
        endpoint = handler.endpoint
        ws = WebSocket(
            sock,
            asyncio.get_running_loop(),
            endpoint.flusher,
            endpoint.max_message_bytes,
            endpoint.max_pending_bytes,
        )
        admitted, handler.admitted = handler.admitted, None
        ws.start(endpoint.open(ws, admitted, handler.selected_subprotocol), early)
        handler.ws_connection = None  # Tornado's objects go; the WebSocket holds the socket
