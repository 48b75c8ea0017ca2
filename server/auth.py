"""Connection tokens and channel permissions.

Tokens are JWTs signed with HS256 and `[security] token_secret`, a key kept apart from the cookie
secret so that backends which mint their own tokens never hold the cookie key. Only HS256 is
accepted: `alg: none` and every other algorithm are refused before the signature is looked at.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import jwt

from server import hs256
from server.config import NamespaceConfig
from server.protocol import Code, ProtocolError, personal_users, split_channel

LEEWAY_S = 10  # clock leeway for `exp`; the protocol allows at most 30 s


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is: a user id (None: anonymous) and what its credentials grant."""

    user: str | None = None
    name: str | None = None
    channels: frozenset[str] = frozenset()  # NO_CHANNELS
    info: dict[str, Any] | None = None
    expires_at: float | None = None
    session: str | None = None


ANONYMOUS = Identity()
NO_CHANNELS = ANONYMOUS.channels  # shared: an empty frozenset costs 216 bytes per connection


class TokenError(Exception):
    """A connection token that must be refused; the message says why (never the token)."""


def mint_token(
    secret: str,
    user: str,
    ttl_s: float,
    name: str | None = None,
    channels: list[str] | None = None,
    info: dict[str, Any] | None = None,
) -> str:
    claims: dict[str, Any] = {"sub": user, "exp": int(time.time() + ttl_s)}
    if name is not None:
        claims["name"] = name
    if channels:
        claims["channels"] = channels
    if info is not None:
        claims["info"] = info
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: Any) -> Identity:
    """Check a connection token and return the identity it carries, or raise TokenError.

    The common shape takes the fast path (server/hs256.py); anything else, every refusal
    included, is PyJWT's to judge.
    """
    if not isinstance(token, str) or not token:
        raise TokenError("token must be a non-empty string")
    claims = hs256.claims(_key(secret), token, LEEWAY_S)
    if claims is None:
        claims = _decode(secret, token)
    return _identity(claims)


@functools.lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return secret.encode()


def _decode(secret: str, token: str) -> dict[str, Any]:
    """The claims of `token` as PyJWT reads them, or TokenError with PyJWT's reason."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("token is not a JWT") from None
    if header.get("alg") != "HS256":
        raise TokenError("token must be signed with HS256")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=LEEWAY_S,
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    return claims


def _identity(claims: dict[str, Any]) -> Identity:
    sub, name, chans, info = (claims.get(k) for k in ("sub", "name", "channels", "info"))
    if not isinstance(sub, str) or not sub:
        raise TokenError("token `sub` must be a non-empty string")
    if name is not None and not isinstance(name, str):
        raise TokenError("token `name` must be a string")
    if chans is not None and not (
        isinstance(chans, list) and all(isinstance(c, str) for c in chans)
    ):
        raise TokenError("token `channels` must be a list of strings")
    if info is not None and not isinstance(info, dict):
        raise TokenError("token `info` must be an object")
    return Identity(
        user=sub,
        name=name,
        channels=frozenset(chans) if chans else NO_CHANNELS,
        info=info,
        expires_at=float(claims["exp"]),
    )


def check_subscribe(identity: Identity, channel: str, ns: NamespaceConfig) -> None:
    """Raise unauthorized/forbidden unless `identity` may subscribe to `channel`.

    Also the rule for `history` and `presence`, which need the right to subscribe.
    """
    if channel in identity.channels:
        return
    _, rest = split_channel(channel)
    owners = personal_users(rest)
    if owners is not None:
        if identity.user is None:
            raise ProtocolError(Code.UNAUTHORIZED, "personal channels need a signed-in user")
        if identity.user not in owners:
            raise ProtocolError(Code.FORBIDDEN, "this personal channel belongs to other users")
        return
    if identity.user is None and not ns.anonymous:
        raise ProtocolError(Code.UNAUTHORIZED, "this namespace needs a signed-in user")


def check_publish(identity: Identity, channel: str, ns: NamespaceConfig, subscribed: bool) -> None:
    """Raise unless a client connection may publish to `channel` (the HTTP API always may)."""
    if ns.publish == "server":
        raise ProtocolError(Code.FORBIDDEN, "only the HTTP API publishes in this namespace")
    if ns.publish == "authenticated" and identity.user is None:
        raise ProtocolError(Code.UNAUTHORIZED, "publishing here needs a signed-in user")
    if ns.publish == "subscribers" and not subscribed:
        raise ProtocolError(Code.FORBIDDEN, "publishing here needs a subscription")
    check_subscribe(identity, channel, ns)
