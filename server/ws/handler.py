"""The transport half of a WebSocket endpoint: what /ws and the echo endpoint share.

A subclass sets `flusher` and `max_pending_bytes` in `initialize`, and says what a connection
does: `opened` gets its Transport (the Outbox), `on_message` its messages, `too_slow` the news
that it stopped reading, `on_close` its end.
"""

from __future__ import annotations

from tornado.websocket import WebSocketProtocol, WebSocketProtocol13

from server.ws import seam
from server.ws.outbox import Flusher, Outbox
from server.ws.reader import ReaderProtocol
from server.ws.transport import Transport

#: The close code for a client whose unsent bytes passed max_pending_bytes (protocol.Close).
TOO_SLOW = 4009


class SocketHandler(seam.Handler):
    flusher: Flusher
    max_pending_bytes: int

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        """Tornado's protocol with the cheaper receive path and the outbox (server/ws/reader.py)."""
        tornados = super().get_websocket_protocol()
        if not isinstance(tornados, WebSocketProtocol13):
            return tornados
        return ReaderProtocol(self, False, tornados.params)

    def open(self, *args: str, **kwargs: str) -> None:
        self.drop_request_state()
        ws = self.ws_connection
        assert isinstance(ws, ReaderProtocol)
        ws.outbox = Outbox(ws, ws.stream, self.max_pending_bytes, self.flusher, self.too_slow)
        self.opened(ws.outbox)

    def opened(self, transport: Transport) -> None:
        """The connection is up; frames go out through `transport`."""
        raise NotImplementedError

    def too_slow(self) -> None:
        """The client stopped reading: its unsent bytes passed max_pending_bytes.

        Nothing more is queued for it; the close frame follows the last whole frame.
        """
        self.close(TOO_SLOW, "client too slow")
