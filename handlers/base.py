"""Shared handler plumbing: JSON errors in the protocol's shape, the API key, JSON bodies."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
import tornado.web

from server import protocol, sessions
from server.node import Node
from server.protocol import HTTP_STATUS, Code, ProtocolError
from server.store.base import StoreUnavailable


class JsonHandler(tornado.web.RequestHandler):
    """A JSON endpoint whose errors are `{"error": {"code", "message"}}` with a fitting status."""

    node: Node

    def initialize(self, node: Node) -> None:
        self.node = node
        if node.draining:  # a proxy stops reusing its keep-alive connections to us
            self.set_header("Connection", "close")

    def check_xsrf_cookie(self) -> None:
        """No XSRF token: JSON endpoints never act on cookies. The HTTP API authenticates with
        a key in a header, which no other site can make a browser send; the rest are read-only
        (a PUT to /healthz answers 405, not 403)."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(orjson.dumps(obj))

    def fail(self, code: Code, message: str, status: int | None = None) -> None:
        self.send_json(
            {"error": {"code": code.value, "message": message}}, status or HTTP_STATUS[code]
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ProtocolError):
            self.fail(exc.code, exc.message, exc.status)
            return
        code = {
            400: Code.BAD_REQUEST,
            401: Code.UNAUTHORIZED,
            403: Code.FORBIDDEN,
            404: Code.NOT_FOUND,
            405: Code.BAD_REQUEST,
            413: Code.LIMIT_EXCEEDED,
            429: Code.LIMIT_EXCEEDED,
            503: Code.UNAVAILABLE,
        }.get(status_code, Code.INTERNAL)
        message = self._reason if status_code < 500 else "internal error"
        self.set_status(status_code)
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.finish(orjson.dumps({"error": {"code": code.value, "message": message}}))

    def allowed_methods(self) -> list[str]:
        """The methods this handler implements, for the Allow header of a 405."""
        base = tornado.web.RequestHandler
        return [
            m
            for m in self.SUPPORTED_METHODS
            if getattr(type(self), m.lower()) is not getattr(base, m.lower())
        ]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ProtocolError):
            return  # an expected refusal, answered in the protocol's shape
        super().log_exception(typ, value, tb)

    def json_body(self) -> dict[str, Any]:
        try:
            body = protocol.loads(self.request.body or b"null")
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(Code.BAD_REQUEST, f"body is not valid JSON: {exc.msg}") from None
        except ValueError as exc:
            raise ProtocolError(Code.BAD_REQUEST, str(exc)) from None
        if not isinstance(body, dict):
            raise ProtocolError(Code.BAD_REQUEST, "body must be a JSON object")
        return body


class ApiHandler(JsonHandler):
    """An HTTP API endpoint for backends: `Authorization: apikey <key>` is required.

    An admin signed in to the pages may call it too, without a key: with the session cookie,
    and on anything but GET the XSRF token of the page (header `X-XSRFToken`), so another site
    cannot make an admin's browser act.
    """

    async def prepare(self) -> None:
        header = self.request.headers.get("Authorization")
        if header is None and await self._admin_session():
            return
        scheme, _, key = (header or "").partition(" ")
        expected = self.node.config.api.key.encode()
        if scheme.lower() != "apikey" or not hmac.compare_digest(key.strip().encode(), expected):
            raise ProtocolError(Code.UNAUTHORIZED, "missing or wrong `Authorization: apikey KEY`")

    async def _admin_session(self) -> bool:
        if self.get_cookie(sessions.COOKIE) is None:
            return False
        config = self.node.config
        try:
            found = await sessions.current(self, self.node.store, config.auth.session_ttl_s)
        except StoreUnavailable:
            return False
        if found is None or f"{found[1].provider}:{found[1].subject}" not in config.auth.admins:
            return False
        if self.request.method not in ("GET", "HEAD"):
            tornado.web.RequestHandler.check_xsrf_cookie(self)
        return True
