"""HTML pages: the shared layout, Content-Security-Policy, cookie flags and escaping live here."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import tornado.web

from server.config import Config
from server.login.service import Login
from server.node import Node

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
#: Where each kind of provider serves the avatars it names (`picture`, `avatar_url`).
GITHUB_AVATARS = "https://avatars.githubusercontent.com"
GOOGLE_AVATARS = "https://*.googleusercontent.com"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(config: Config) -> str:
    """The pages' CSP: scripts, styles and sockets of this site only.

    `connect-src` adds the origins allowed to open WebSockets (`[security] allowed_origins`,
    never "*") and the WebSocket origin of `[auth] base_url`; `img-src` the avatar hosts of
    the configured login providers, so a page can show the signed-in user's picture and
    nothing else from elsewhere.
    """
    connect = ["'self'"]
    if config.auth.base_url:
        base = urlsplit(config.auth.base_url)
        connect.append(f"{'wss' if base.scheme == 'https' else 'ws'}://{base.netloc}")
    connect += [o for o in config.security.allowed_origins if o != "*"]
    images = ["'self'"]
    auth = config.auth
    if auth.github.enabled:
        api = _origin(auth.github.api_url)
        images.append(GITHUB_AVATARS if api == "https://api.github.com" else api)
    if auth.google.enabled:
        images.append(GOOGLE_AVATARS)
    images += [_origin(o.issuer) for o in auth.oidc.values() if o.enabled]
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {' '.join(dict.fromkeys(images))}; "
        f"connect-src {' '.join(dict.fromkeys(connect))}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


class PageHandler(tornado.web.RequestHandler):
    """Every page: the node, the login service (who is signed in, how to sign in) and headers."""

    def initialize(self, node: Node, login: Login) -> None:
        self.node = node
        self.login = login

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", self.settings.get("csp", CSP))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        """Every cookie a page sets (session, login flow, `_xsrf`) is Secure when
        `[security] secure_cookies` is "always", or "auto" and the request came over https
        (which only `[server] trusted_proxies` can say for a proxied request)."""
        always = self.node.config.security.secure_cookies == "always"
        kwargs["secure"] = always or self.request.protocol == "https"
        super().set_cookie(name, value, *args, **kwargs)
