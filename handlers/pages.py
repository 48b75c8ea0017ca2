"""HTML pages: the shared layout, Content-Security-Policy and escaping live here."""

from __future__ import annotations

import tornado.web

from server import sessions
from server.login.service import Login
from server.node import Node
from server.store.base import StoreUnavailable

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
       "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class PageHandler(tornado.web.RequestHandler):
    def initialize(self, node: Node) -> None:
        self.node = node

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")


class IndexHandler(PageHandler):
    def initialize(self, node: Node, login: Login) -> None:  # type: ignore[override]
        super().initialize(node)
        self.login = login

    async def get(self) -> None:
        channel = self.get_query_argument("channel", "lobby")
        try:
            found = await sessions.current(self, self.node.store,
                                           self.node.config.auth.session_ttl_s)
        except StoreUnavailable:
            found = None  # the page still works signed out while the store is down
        self.render("index.html", channel=channel, user=found[1] if found else None,
                    buttons=self.login.buttons())
