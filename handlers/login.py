"""Sign-in pages, provider redirects and callbacks, and sign-out: thin over server.login.

Every way a sign-in can fail ends on auth_error.html with a way back, never a traceback, and
before any session exists: the session cookie is set only after the provider's identity was
verified and the user stored. POST forms (dev login, logout) are checked against the XSRF cookie
by Tornado (`xsrf_cookies`), so another site cannot submit them in the user's name.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from handlers.pages import PageHandler
from server import sessions
from server.login.base import LoginError, StoreDown
from server.login.dev import DevProvider
from server.login.flow import FLOW_TTL_S, Flow
from server.protocol import Close, ProtocolError
from server.store.base import StoreUnavailable

log = logging.getLogger("switchboard.login")

FLOW_COOKIE = "sb_login"
FLOW_COOKIE_PATH = "/login"  # only the login routes ever see the flow
CALLBACK_ARGS = ("state", "code", "error")


class LoginBase(PageHandler):
    @property
    def ttl_s(self) -> float:
        return self.node.config.auth.session_ttl_s

    def redirect_uri(self, name: str) -> str:
        return self.login.redirect_uri(name, self.request.protocol, self.request.host)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, LoginError):
            status_code, message = exc.status, exc.message
        elif status_code == 403:
            message = (
                "This form did not come from this site's own page, or the page is too "
                "old. Go back, reload the page and try again."
            )
        elif status_code < 500:
            message = "That request could not be handled."
        else:
            message = "Something went wrong while signing in. Please try again."
        self.set_status(status_code)
        self.render("auth_error.html", message=message)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, LoginError):
            log.info("sign-in refused: %s", value.message)
            return
        super().log_exception(typ, value, tb)


class LoginPageHandler(LoginBase):
    def get(self) -> None:
        self.render("login.html", buttons=self.login.buttons(), dev_state=None)


class StartHandler(LoginBase):
    """Start a flow: remember it in the browser, then send the browser to the provider."""

    async def get(self, name: str) -> None:
        flow, url = await self.login.begin(name, self.redirect_uri(name))
        self.set_signed_cookie(
            FLOW_COOKIE,
            flow.encode(),
            expires_days=None,
            max_age=int(FLOW_TTL_S),
            path=FLOW_COOKIE_PATH,
            **sessions.cookie_options(self.request),
        )
        self.redirect(url)


class CallbackHandler(LoginBase):
    """The provider sent the browser back: check the flow, exchange the code, start a session."""

    async def get(self, name: str) -> None:
        raw = self.get_signed_cookie(FLOW_COOKIE, max_age_days=FLOW_TTL_S / 86400)
        self.clear_cookie(
            FLOW_COOKIE, path=FLOW_COOKIE_PATH, **sessions.cookie_options(self.request)
        )
        args = {k: v for k in CALLBACK_ARGS if (v := self.get_query_argument(k, None)) is not None}
        flow = Flow.decode(raw) if raw is not None else None
        user = await self.login.finish(name, flow, args, self.redirect_uri(name))
        try:
            await sessions.start(self, self.node.store, user, self.ttl_s)
        except StoreUnavailable:
            raise StoreDown() from None
        self.redirect("/")


class DevAuthorizeHandler(LoginBase):
    """The dev provider's own "consent" page: choose a test user name."""

    def _provider(self) -> DevProvider:
        provider = self.login.provider("dev")
        assert isinstance(provider, DevProvider)
        return provider

    def get(self) -> None:
        self._provider()
        self.render("login.html", buttons=[], dev_state=self.get_query_argument("state", ""))

    def post(self) -> None:
        state = self.get_body_argument("state", "")
        code = self._provider().grant(self.get_body_argument("name", ""), state)
        self.redirect(f"/login/dev/callback?{urlencode({'code': code, 'state': state})}")


class LogoutHandler(LoginBase):
    """End the session in the store and close its sockets (4001) on every process."""

    async def post(self) -> None:
        try:
            found = await sessions.end(self, self.node.store, self.ttl_s)
        except StoreUnavailable:
            raise StoreDown() from None
        if found is not None:
            session, user = found
            try:
                await self.node.disconnect_user(
                    user.id, Close.UNAUTHORIZED, "signed out", session=session.id
                )
            except ProtocolError:
                raise LoginError(
                    "You are signed out, but your open connections could not be "
                    "closed right now; they will be refused when they reconnect."
                ) from None
        self.redirect("/")
