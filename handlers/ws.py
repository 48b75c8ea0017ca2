"""The WebSocket endpoint: a thin adapter between Tornado and server.client.Connection."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import tornado.httputil
import tornado.iostream
import tornado.web
import tornado.websocket

from handlers.wsreader import ReaderProtocol
from server import auth, sessions
from server.client import Connection, Transport
from server.node import Node
from server.outbox import Flusher, Outbox
from server.protocol import Close
from server.store.base import StoreUnavailable

#: Shared stand-ins for request state dropped after the upgrade; nothing writes to them.
_NO_HEADERS = tornado.httputil.HTTPHeaders()
_NO_ARGUMENTS: dict[str, list[bytes]] = {}


class WebSocketHandler(tornado.websocket.WebSocketHandler, Transport):
    """Serves protocol v1 at /ws; see docs/protocol.md."""

    def initialize(self, node: Node, flusher: Flusher) -> None:
        self.node = node
        self.flusher = flusher
        self.identity = auth.ANONYMOUS
        self.conn: Connection | None = None
        self.outbox: Outbox | None = None

    def check_origin(self, origin: str) -> bool:
        """Same origin always; other origins only when listed in `allowed_origins`.

        A page on another site could otherwise open a socket that carries this site's cookies
        (cross-site WebSocket hijacking), so the default is to refuse.
        """
        allowed = self.node.config.security.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return urlsplit(origin).netloc.lower() == self.request.host.lower()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.node.hub.client_count >= self.node.config.server.max_connections:
            self.node.stats.refused += 1
            raise tornado.web.HTTPError(503, reason="connection limit reached")
        token = self.get_query_argument("token", None)
        if token is not None:
            try:
                self.identity = auth.verify_token(self.node.config.security.token_secret, token)
            except auth.TokenError as exc:
                self.node.stats.refused += 1
                self.set_status(401, reason="Unauthorized")
                self.finish({"error": {"code": "unauthorized", "message": str(exc)}})
                return
        else:
            await self._identify_by_session()
        await super().get(*args, **kwargs)

    async def _identify_by_session(self) -> None:
        """A browser's session cookie, if it names a live session, signs the connection in."""
        try:
            found = await sessions.current(
                self, self.node.store, self.node.config.auth.session_ttl_s
            )
        except StoreUnavailable:
            raise tornado.web.HTTPError(503, reason="session store unavailable") from None
        if found is not None:
            self.identity = sessions.identity(*found)

    def open(self, *args: str, **kwargs: str) -> None:
        self._drop_request_state()
        stream = self.ws_connection.stream  # type: ignore[union-attr]
        self.outbox = Outbox(
            stream, self.node.config.server.max_pending_bytes, self._too_slow, self.flusher
        )
        self.conn = Connection(self.node, self, self.identity, self.outbox.send)
        self.conn.open()

    def _drop_request_state(self) -> None:
        """Forget what only the handshake needed: per connection it is about 1 KB.

        The headers, and the query with its copies of the token (uri, query, arguments), are
        read by the upgrade alone; logs need only the method, path and address.
        """
        self.ui = None  # template helpers: a socket renders nothing
        self._headers = _NO_HEADERS  # the 101 response's, already sent
        req = self.request
        req.headers = _NO_HEADERS
        req.uri = req.path
        req.query = ""
        req.arguments = req.query_arguments = req.body_arguments = _NO_ARGUMENTS

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        """Tornado's protocol with a cheaper receive path (handlers/wsreader.py)."""
        tornados = super().get_websocket_protocol()
        if not isinstance(tornados, tornado.websocket.WebSocketProtocol13):
            return tornados
        return ReaderProtocol(self, False, tornados.params)

    def _detach_stream(self) -> tornado.iostream.IOStream:
        """Hand the stream to the WebSocket protocol, without Tornado's per-instance guards.

        Tornado replaces write, finish and five other methods on each handler with ones that
        raise, which adds seven entries to every connection's __dict__ (about 1.5 KB); this
        handler never calls them after the upgrade.
        """
        return self.detach()

    def on_ping(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.control_frame()  # pings count toward the command rate

    def on_pong(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.control_frame()

    def on_message(self, message: str | bytes) -> Any:
        assert self.conn is not None
        return self.conn.handle(message)

    def on_close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        if self.conn is not None:
            self.node.spawn(self.conn.closed())

    # -- Transport ----------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        if self.outbox is not None:
            self.outbox.send(frame)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.outbox is not None:
            self.outbox.flush()
            self.outbox.close()
        super().close(code, reason)

    def _too_slow(self) -> None:
        """The client stopped reading: its unsent bytes passed max_pending_bytes.

        The cap is lifted for the close frame alone (a few bytes), which Tornado must be able
        to queue; Tornado then drops the socket if the client never answers it.
        """
        if self.ws_connection is not None:
            self.ws_connection.stream.max_write_buffer_size = None  # type: ignore[attr-defined]
        if self.conn is not None:
            self.conn.disconnect(Close.TOO_SLOW, "client too slow", True)
