"""The site's pages: home (channels, sign-in), a channel's live page, the admin dashboard.

The pages are shells: their scripts connect with static/switchboard.js and fill them in, so
everything a page shows stays live. Templates autoescape; scripts write with textContent.
"""

from __future__ import annotations

from typing import Any

import orjson
import tornado.web

from handlers.pages import PageHandler
from server import auth, protocol, sessions, statsfeed
from server.login.service import Login
from server.node import Node
from server.protocol import ProtocolError
from server.store.base import StoreUnavailable, User

#: Lifetime of the admin page's connection tokens; the page asks for a fresh one on reconnect,
#: so a signed-out admin's dashboard stops within this long.
ADMIN_TOKEN_TTL_S = 600


class SitePage(PageHandler):
    """A page that knows who is signed in (None while the store is down: pages still work)."""

    user: User | None

    def initialize(self, node: Node, login: Login) -> None:  # type: ignore[override]
        super().initialize(node)
        self.login = login

    async def prepare(self) -> None:
        try:
            found = await sessions.current(
                self, self.node.store, self.node.config.auth.session_ttl_s
            )
        except StoreUnavailable:
            found = None
        self.user = found[1] if found else None

    @property
    def is_admin(self) -> bool:
        return self.user is not None and self.login.is_admin(self.user)

    def get_template_namespace(self) -> dict[str, Any]:
        """What the shared header needs on every page."""
        return {
            **super().get_template_namespace(),
            "user": self.user,
            "buttons": self.login.buttons(),
            "is_admin": self.is_admin,
        }

    def require_admin(self) -> User:
        if self.user is None:
            raise tornado.web.HTTPError(401)
        if not self.login.is_admin(self.user):
            raise tornado.web.HTTPError(403)
        return self.user

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        messages = {
            401: "Sign in as an admin to see this page.",
            403: "This page is for the admins named in config.toml.",
            404: "There is no such page or channel.",
        }
        self.render("error.html", message=messages.get(status_code, "Something went wrong."))


class HomeHandler(SitePage):
    def get(self) -> None:
        self.render("home.html", channels_feed=statsfeed.CHANNELS)


class ChannelHandler(SitePage):
    def get(self, channel: str) -> None:
        try:
            protocol.check_channel(channel)
        except ProtocolError:
            raise tornado.web.HTTPError(404) from None
        self.render("channel.html", channel=channel)


class AdminHandler(SitePage):
    def get(self) -> None:
        self.require_admin()
        self.render("admin.html", stats_feed=statsfeed.STATS)


class AdminTokenHandler(SitePage):
    """A short-lived connection token that may subscribe to the stats feed, for admins only.

    A GET is safe here: another site can make the browser send it, but cannot read the answer.
    """

    def get(self) -> None:
        user = self.require_admin()
        token = auth.mint_token(
            self.node.config.security.token_secret,
            user.id,
            ADMIN_TOKEN_TTL_S,
            user.name,
            [statsfeed.STATS],
        )
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(orjson.dumps({"token": token}))
