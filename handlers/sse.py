"""The SSE fallback's HTTP half: `GET /sse` streams a session's frames, `POST /sse` carries its
commands, `DELETE /sse` ends it.

Protocol v1 unchanged, over plain HTTP for networks whose proxies refuse WebSocket upgrades
(docs/protocol.md, "SSE transport"). The session itself is server/sse/; each Connection is the
same as a WebSocket's, so limits, permissions and delivery are too.

Cross-site request forgery: a POST acts on a session only with its id, which the server hands
out in the event stream alone, and a page of another site cannot read that stream (the same-
origin policy; CORS only for `allowed_origins`). A page's requests carry an Origin header,
checked with the WebSocket endpoint's rule (server/sse/origin.py) on the stream and on every
POST. So the session id, not the cookie, authorises a command, and Tornado's XSRF cookie check,
meant for forms, is not needed here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado.concurrent import Future

from handlers.base import JsonHandler
from server import auth, sessions
from server.broker.base import BrokerUnavailable
from server.client import Connection
from server.node import Node
from server.protocol import Code
from server.sse import events, origin
from server.sse.registry import Sessions
from server.sse.session import Session
from server.store.base import StoreUnavailable

#: The request header that names the session a POST's commands are for.
SESSION_HEADER = "Switchboard-Session"


class EventStreamHandler(JsonHandler):
    def initialize(self, node: Node, sessions: Sessions) -> None:  # type: ignore[override]
        super().initialize(node)
        self.sessions = sessions
        self.response: Response | None = None

    def prepare(self) -> None:
        """The origin rule of /ws; an allowed other site gets CORS headers with credentials."""
        page = self.request.headers.get("Origin")
        allowed = self.node.config.security.allowed_origins
        if not origin.allowed(page, self.request.host, allowed):
            self.fail(Code.FORBIDDEN, "origin not allowed", 403)
            return
        if page is not None and not origin.same_site(page, self.request.host):
            self.set_header("Access-Control-Allow-Origin", page)
            self.set_header("Access-Control-Allow-Credentials", "true")
            self.set_header("Vary", "Origin")

    def options(self) -> None:
        """A CORS preflight, for the POSTs of an allowed other site."""
        self.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE")
        self.set_header(
            "Access-Control-Allow-Headers", f"{SESSION_HEADER}, Content-Type, Last-Event-ID"
        )
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    # -- the event stream -------------------------------------------------------------------

    async def get(self) -> None:
        last = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last", "")
        if last:
            await self._resume(last)
            return
        node = self.node
        if node.hub.client_count >= node.config.server.max_connections:
            node.stats.refused += 1
            self.fail(Code.UNAVAILABLE, "connection limit reached", 503)
            return
        identity = await self._identify()
        if identity is None:
            return
        session = self.sessions.new()
        conn = Connection(node, session, identity)
        session.conn = conn
        response = self._start(session)
        conn.open()  # the hello waits in the session's buffer for the stream
        session.attach(response, 0)
        await response.done

    async def _identify(self) -> auth.Identity | None:
        """The connection token in the query, else the session cookie, else anonymous."""
        token = self.get_query_argument("token", None)
        if token is not None:
            try:
                return auth.verify_token(self.node.config.security.token_secret, token)
            except auth.TokenError as exc:
                self.node.stats.refused += 1
                self.fail(Code.UNAUTHORIZED, str(exc), 401)
                return None
        try:
            found = await sessions.current(
                self, self.node.store, self.node.config.auth.session_ttl_s
            )
        except StoreUnavailable:
            self.fail(Code.UNAVAILABLE, "session store unavailable", 503)
            return None
        return sessions.identity(*found) if found is not None else auth.ANONYMOUS

    async def _resume(self, last: str) -> None:
        """Reconnect a session's stream after event `<session>:<n>`: what came after is sent
        again. 204 (which tells a browser's EventSource to stop) when there is no session to
        resume: the client starts a new one and recovers its subscriptions with `since`."""
        parsed = events.parse_last_event_id(last)
        session = self.sessions.get(parsed[0]) if parsed is not None else None
        if parsed is None or session is None or session.ended:
            self.set_status(204)
            self.finish()
            return
        response = self._start(session)
        if not session.attach(response, parsed[1]):
            session.too_slow()  # frames it missed are gone: it cannot go on without a gap
            response.write(events.close(4009, "client too slow"))
            return
        await response.done

    def _start(self, session: Session) -> Response:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # nginx: pass events on as they come
        self.response = Response(self, session)
        return self.response

    def on_connection_close(self) -> None:
        response = self.response
        if response is not None:
            response.gone()

    # -- commands ---------------------------------------------------------------------------

    async def post(self) -> None:
        """Commands for a session: protocol v1 frames, one per line. Replies come on the
        stream; 202 means queued, in order after the commands posted before."""
        sid = self.request.headers.get(SESSION_HEADER, "")
        if not sid:
            self.fail(Code.BAD_REQUEST, f"the {SESSION_HEADER} header is required", 400)
            return
        body = self.request.body
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(Code.BAD_REQUEST, "commands must be UTF-8 JSON", 400)
            return
        frames = [line for line in body.split(b"\n") if line.strip()]
        if not frames:
            self.fail(Code.BAD_REQUEST, "no command in the body", 400)
            return
        limit = self.node.config.server.max_message_bytes
        if any(len(f) > limit for f in frames):
            self.fail(Code.LIMIT_EXCEEDED, "a command is larger than max_message_bytes", 413)
            return
        try:
            queued = await self.sessions.post(sid, frames)
        except BrokerUnavailable:
            self.fail(Code.UNAVAILABLE, "the session's process cannot be reached", 503)
            return
        if queued is None:
            self.fail(Code.NOT_FOUND, "no such session (it ended)", 404)
        elif not queued:
            self.fail(Code.LIMIT_EXCEEDED, "too many commands waiting", 429)
        else:
            self.set_status(202)
            self.finish()

    async def delete(self) -> None:
        """The client is done with the session: it ends now, not after its grace period."""
        sid = self.request.headers.get(SESSION_HEADER, "")
        try:
            found = await self.sessions.hang_up(sid) if sid else False
        except BrokerUnavailable:
            self.fail(Code.UNAVAILABLE, "the session's process cannot be reached", 503)
            return
        if not found:
            self.fail(Code.NOT_FOUND, "no such session (it ended)", 404)
            return
        self.set_status(204)
        self.finish()


class Response:
    """A GET's response as a session's Stream (server.sse.session.Stream)."""

    def __init__(self, handler: EventStreamHandler, session: Session) -> None:
        self._handler = handler
        self._session = session
        self._unsent = 0
        self._gone = False
        self.done: Future[None] = Future()

    def write(self, data: bytes) -> None:
        if self._gone:
            return
        self._handler.write(data)
        size = len(data)
        self._unsent += size
        self._handler.flush().add_done_callback(lambda f: self._sent(f, size))

    def _sent(self, future: asyncio.Future[Any], size: int) -> None:
        self._unsent -= size
        if not future.cancelled() and future.exception() is not None:
            self.gone()

    def unsent(self) -> int:
        return self._unsent

    def end(self) -> None:
        """Finish the response (the session ended, or a newer stream replaced this one)."""
        self._gone = True
        if not self.done.done():
            self.done.set_result(None)

    def gone(self) -> None:
        """The client closed the connection: the session waits for the next stream."""
        if self._gone:
            return
        self._gone = True
        self._session.detach(self)
        if not self.done.done():
            self.done.set_result(None)
