"""HTML pages: the shared layout, Content-Security-Policy and escaping live here."""

from __future__ import annotations

import tornado.web

from server.node import Node

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class PageHandler(tornado.web.RequestHandler):
    def initialize(self, node: Node) -> None:
        self.node = node

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
