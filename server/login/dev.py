"""The development identity provider: a local page where you pick a test user's name.

It plays a real provider's part: its authorize page redirects back to the same callback with a
code, and that code (signed with the cookie secret, bound to the flow's state, valid a minute)
is exchanged for the identity. So a dev login exercises state, callback, upsert and session
exactly as GitHub does. Config validation refuses it outside --dev.
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import urlencode

import orjson
import tornado.web

from server.login.base import DeniedError, ExternalIdentity, Provider
from server.login.flow import Flow

AUTHORIZE_PATH = "/login/dev/authorize"
CODE_NAME = "sb_dev_code"
CODE_TTL_S = 60.0
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,39}")


class DevProvider(Provider):
    name = "dev"
    label = "Dev login"

    def __init__(self, secret: str) -> None:
        self._secret = secret

    async def authorize_url(self, redirect_uri: str, flow: Flow) -> str:
        return f"{AUTHORIZE_PATH}?{urlencode({'state': flow.state})}"

    def grant(self, user_name: str, state: str) -> str:
        """The code the authorize page hands back for `user_name`; DeniedError if unusable."""
        user_name = user_name.strip()
        if not NAME_RE.fullmatch(user_name):
            raise DeniedError("A test user name is 1 to 40 letters, digits, spaces, _ . or -.")
        value = orjson.dumps({"name": user_name, "state": state})
        return tornado.web.create_signed_value(self._secret, CODE_NAME, value).decode()

    async def identify(self, code: str, redirect_uri: str, flow: Flow) -> ExternalIdentity:
        raw = tornado.web.decode_signed_value(
            self._secret, CODE_NAME, code, max_age_days=CODE_TTL_S / 86400
        )
        data = orjson.loads(raw) if raw is not None else None
        if not isinstance(data, dict) or not hmac.compare_digest(
            str(data.get("state")).encode(), flow.state.encode()
        ):
            raise DeniedError("The dev login code is invalid or expired.")
        name = str(data["name"])
        return ExternalIdentity(name.lower(), name)
