"""The site's pages: home (channels, sign-in), a channel's live page, the admin pages, errors.

The pages are shells: their scripts connect with static/switchboard.js and fill them in, so
everything a page shows stays live. Templates autoescape; scripts write with textContent.
Every error, an unknown URL included, is one styled page (error.html) with a way on.
"""

from __future__ import annotations

from typing import Any

import orjson
import tornado.web

from handlers.pages import PageHandler
from server import auth, protocol, sessions
from server.observe import statsfeed
from server.protocol import ProtocolError
from server.store.base import StoreUnavailable, User

#: Lifetime of the admin page's connection tokens; the page asks for a fresh one on reconnect,
#: so a signed-out admin's dashboard stops within this long.
ADMIN_TOKEN_TTL_S = 600

TITLES = {
    401: "Sign-in needed",
    403: "Not for you",
    404: "Page not found",
    405: "Not allowed",
}
MESSAGES = {
    401: "Sign in as an admin to see this page.",
    403: "This page is for the admins named in config.toml.",
    404: "There is no such page or channel here.",
}


class SitePage(PageHandler):
    """A page that knows who is signed in (None while the store is down: pages still work)."""

    user: User | None = None

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
        admin_page = self.request.path.startswith("/admin")
        self.render(
            "error.html",
            status=status_code,
            title=TITLES.get(status_code, "Something went wrong"),
            message=MESSAGES.get(status_code, "Something went wrong. Please try again."),
            admin_hint=admin_page and status_code in (401, 403) and self.node.config.dev,
            you=_identity(self.user),
        )


def _identity(user: User | None) -> str | None:
    """How `[auth] admins` would name this user."""
    return f"{user.provider}:{user.subject}" if user is not None else None


class NotFoundHandler(SitePage):
    """Any URL no route matches: the styled 404 page, or the API's JSON error under /api/."""

    async def prepare(self) -> None:
        if self.request.path.startswith("/api/"):
            self.set_status(404)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(orjson.dumps({"error": {"code": "not_found", "message": "Not Found"}}))
            return
        await super().prepare()
        raise tornado.web.HTTPError(404)


class StaticFiles(tornado.web.StaticFileHandler):
    """Static files; a missing one gets the same 404 page as any other unknown URL."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.render(
            "error.html",
            status=status_code,
            title=TITLES.get(status_code, "Something went wrong"),
            message=MESSAGES.get(status_code, "Something went wrong. Please try again."),
            admin_hint=False,
            you=None,
            user=None,
            buttons=[],
            is_admin=False,
        )


class HomeHandler(SitePage):
    def get(self) -> None:
        self.render("home.html", channels_feed=statsfeed.CHANNELS)


class ChannelHandler(SitePage):
    def get(self, channel: str) -> None:
        try:
            ns = self.node.config.namespace_of(protocol.check_channel(channel))
        except ProtocolError:
            raise tornado.web.HTTPError(404) from None
        owners = protocol.personal_users(protocol.split_channel(channel)[1])
        members_only = not ns.anonymous or owners is not None
        if self.user is not None and owners is not None and self.user.id not in owners:
            raise tornado.web.HTTPError(404)  # somebody else's: not even its existence
        if ns.publish == "server":
            composer = "server"
        elif ns.publish == "authenticated" and self.user is None:
            composer = "sign-in"
        else:
            composer = "open"
        self.render(
            "channel.html",
            channel=channel,
            locked=members_only and self.user is None,
            composer=composer,
            presence=ns.presence,
        )


class AdminHandler(SitePage):
    def get(self) -> None:
        self.require_admin()
        self.render("admin.html", stats_feed=statsfeed.STATS)


class AdminChannelsHandler(SitePage):
    def get(self) -> None:
        self.require_admin()
        self.render("admin_channels.html")


class AdminChannelHandler(SitePage):
    def get(self, channel: str) -> None:
        self.require_admin()
        try:
            ns = self.node.config.namespace_of(protocol.check_channel(channel))
        except ProtocolError:
            raise tornado.web.HTTPError(404) from None
        self.render(
            "admin_channel.html",
            channel=channel,
            xsrf=self.xsrf_token.decode(),
            history=ns.keeps_history,
            presence=ns.presence,
        )


class AdminTokenHandler(SitePage):
    """A short-lived connection token that may subscribe to the stats feed and, with
    `?channel=C`, to that channel whatever its namespace's rules: for admins only.

    A GET is safe here: another site can make the browser send it, but cannot read the answer.
    """

    def get(self) -> None:
        user = self.require_admin()
        channels = [statsfeed.STATS]
        wanted = self.get_query_argument("channel", None)
        if wanted is not None:
            try:
                channels.append(protocol.check_channel(wanted))
            except ProtocolError:
                raise tornado.web.HTTPError(400) from None
        token = auth.mint_token(
            self.node.config.security.token_secret, user.id, ADMIN_TOKEN_TTL_S, user.name, channels
        )
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(orjson.dumps({"token": token}))
