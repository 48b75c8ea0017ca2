"""The WebSocket endpoint /ws: who may connect, and the Connection that speaks protocol v1.

Two ways in, one result. `Endpoint.admit` serves the plain upgrades server/ws/listener.py
answers itself (a token or no credentials); `WebSocketHandler` serves the rest through Tornado
(a browser's session cookie, and every refusal: 401, 403, 503). Both end in `Endpoint.open`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import tornado.web

from server import auth, sessions
from server.auth import Identity
from server.client import Connection
from server.codec import Transcoder
from server.node import Node
from server.store.base import StoreUnavailable
from server.ws import subprotocol
from server.ws.handler import SocketHandler
from server.ws.handshake import Request, cross_origin_allowed
from server.ws.outbox import Flusher
from server.ws.transport import TransportOwner
from server.ws.websocket import WebSocket

#: A token as a JWT is written: what the fast path takes as it is (anything else: Tornado).
_TOKEN = re.compile(r"[A-Za-z0-9_\-.]+")


class Endpoint:
    """Protocol v1 at /ws (docs/protocol.md); the transport is server/ws/."""

    def __init__(self, node: Node, flusher: Flusher, transcoder: Transcoder) -> None:
        self.node = node
        self.flusher = flusher
        self.transcoder = transcoder
        self.max_message_bytes = node.config.server.max_message_bytes
        self.max_pending_bytes = node.config.server.max_pending_bytes

    def check_origin(self, origin: str, host: str) -> bool:
        """Same origin always; other origins only when listed in `allowed_origins`.

        A page on another site could otherwise open a socket that carries this site's cookies
        (cross-site WebSocket hijacking), so the default is to refuse.
        """
        allowed = self.node.config.security.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return urlsplit(origin).netloc.lower() == host.lower()

    def admit(self, req: Request) -> Identity | None:
        """The identity of a plain upgrade, or None when Tornado's handler must answer it."""
        node = self.node
        if node.draining or node.hub.client_count >= node.config.server.max_connections:
            return None  # 503
        host = req.headers["host"]
        if not cross_origin_allowed(req, lambda origin: self.check_origin(origin, host)):
            return None  # 403
        token = None
        if req.query:
            args = parse_qs(req.query, keep_blank_values=True)
            if args.keys() != {"token"}:
                return None  # parameters only the handler knows of
            token = args["token"][-1]
            if not _TOKEN.fullmatch(token):
                return None
        if token is not None:
            try:
                return auth.verify_token(node.config.security.token_secret, token)
            except auth.TokenError:
                return None  # 401, with the reason
        if sessions.COOKIE in req.headers.get("cookie", ""):
            return None  # a session to look up in the store
        return auth.ANONYMOUS

    def select_subprotocol(self, offered: list[str]) -> str | None:
        """`switchboard.msgpack` or `switchboard.json` when offered; none means JSON."""
        return subprotocol.select(offered)

    def open(self, ws: WebSocket, identity: Identity, chosen: str | None) -> TransportOwner:
        transport = subprotocol.wrap(ws, chosen, self.transcoder)
        conn = Connection(self.node, transport, identity, subprotocol.parser(chosen))
        conn.open()
        return conn


class WebSocketHandler(SocketHandler):
    """/ws through Tornado: refusals, and browsers signed in by their session cookie."""

    endpoint: Endpoint

    def initialize(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.node = endpoint.node

    def check_origin(self, origin: str) -> bool:
        return self.endpoint.check_origin(origin, self.request.host)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return self.endpoint.select_subprotocol(subprotocols)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.node.draining:  # a proxy retries another host on 503
            self.node.stats.refused += 1
            raise tornado.web.HTTPError(503, reason="server draining")
        if self.node.hub.client_count >= self.node.config.server.max_connections:
            self.node.stats.refused += 1
            raise tornado.web.HTTPError(503, reason="connection limit reached")
        token = self.get_query_argument("token", None)
        identity = auth.ANONYMOUS
        if token is not None:
            try:
                identity = auth.verify_token(self.node.config.security.token_secret, token)
            except auth.TokenError as exc:
                self.node.stats.refused += 1
                self.set_status(401, reason="Unauthorized")
                self.finish({"error": {"code": "unauthorized", "message": str(exc)}})
                return
        else:
            identity = await self._identify_by_session()
        self.admitted = identity
        await super().get(*args, **kwargs)

    async def _identify_by_session(self) -> Identity:
        """A browser's session cookie, if it names a live session, signs the connection in."""
        try:
            found = await sessions.current(
                self, self.node.store, self.node.config.auth.session_ttl_s
            )
        except StoreUnavailable:
            raise tornado.web.HTTPError(503, reason="session store unavailable") from None
        return auth.ANONYMOUS if found is None else sessions.identity(*found)
