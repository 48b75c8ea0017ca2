"""What every login provider offers, the identity it vouches for, and the errors a flow can end in.

A provider is transport-free: it builds the authorize URL and turns a callback's code into an
identity; the state, the session and the pages live elsewhere, so every provider takes the same
path through them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import tornado.httpclient

from server.login.flow import Flow

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 10.0


class LoginError(Exception):
    """A login that ends on the error page: `message` is for the person, never a traceback."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StateError(LoginError):
    """Missing, forged, replayed or expired state: the callback is not this browser's flow."""


class DeniedError(LoginError):
    status = 403


class ProviderError(LoginError):
    """The provider was unreachable or answered something we cannot trust."""

    status = 502


class StoreDown(LoginError):
    status = 503

    def __init__(self) -> None:
        super().__init__(
            "Sign-in is unavailable right now (the user database cannot be "
            "reached). Please try again in a moment."
        )


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """Who the provider says signed in: `subject` is its stable id for the person."""

    subject: str
    name: str
    avatar: str | None = None


class Provider(ABC):
    name: str
    label: str

    @abstractmethod
    async def authorize_url(self, redirect_uri: str, flow: Flow) -> str:
        """Where to send the browser to sign in; carries flow.state (and nonce, PKCE)."""

    @abstractmethod
    async def identify(self, code: str, redirect_uri: str, flow: Flow) -> ExternalIdentity:
        """Exchange the callback's code for the identity; raise LoginError when untrusted."""


async def fetch_json(
    label: str,
    url: str,
    *,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """GET (or POST a form to) a provider endpoint and return its JSON object.

    Every failure is a ProviderError naming the provider, so an outage or a refusal ends on the
    error page rather than in a traceback.
    """
    req = tornado.httpclient.HTTPRequest(
        url,
        method="POST" if form is not None else "GET",
        body=urlencode(form) if form is not None else None,
        headers={"Accept": "application/json", "User-Agent": "Switchboard", **(headers or {})},
        auth_username=auth[0] if auth else None,
        auth_password=auth[1] if auth else None,
        connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=REQUEST_TIMEOUT_S,
        follow_redirects=False,
    )
    try:
        resp = await tornado.httpclient.AsyncHTTPClient().fetch(req, raise_error=False)
    except (OSError, tornado.httpclient.HTTPClientError):
        raise ProviderError(f"{label} could not be reached. Try again in a moment.") from None
    try:
        body = orjson.loads(resp.body or b"")
    except orjson.JSONDecodeError:
        body = None
    if resp.code != 200 or not isinstance(body, dict):
        detail = body.get("error") if isinstance(body, dict) else None
        raise ProviderError(
            f"{label} refused the sign-in (HTTP {resp.code}{', ' + str(detail) if detail else ''})."
        )
    return body
