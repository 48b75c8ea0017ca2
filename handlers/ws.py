"""The WebSocket endpoint: a thin adapter between server/ws/ and server.client.Connection."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import tornado.web

from server import auth, sessions
from server.client import Connection
from server.codec import Transcoder
from server.node import Node
from server.protocol import Close
from server.store.base import StoreUnavailable
from server.ws import subprotocol
from server.ws.handler import SocketHandler
from server.ws.outbox import Flusher
from server.ws.transport import Transport


class WebSocketHandler(SocketHandler):
    """Serves protocol v1 at /ws; see docs/protocol.md. The transport is server/ws/."""

    def initialize(self, node: Node, flusher: Flusher, transcoder: Transcoder) -> None:
        self.node = node
        self.flusher = flusher
        self.transcoder = transcoder
        self.max_pending_bytes = node.config.server.max_pending_bytes
        self.identity = auth.ANONYMOUS
        self.conn: Connection | None = None

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

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        """`switchboard.msgpack` or `switchboard.json` when offered; none means JSON."""
        return subprotocol.select(subprotocols)

    def opened(self, transport: Transport) -> None:
        chosen = self.selected_subprotocol
        transport = subprotocol.wrap(transport, chosen, self.transcoder)
        self.conn = Connection(self.node, transport, self.identity, subprotocol.parser(chosen))
        self.conn.open()

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
        if self.conn is not None:
            self.node.spawn(self.conn.closed())

    def too_slow(self) -> None:
        """The client stopped reading: its unsent bytes passed max_pending_bytes."""
        if self.conn is not None:
            self.conn.disconnect(Close.TOO_SLOW, "client too slow", True)
