"""server/hs256.py: the fast path accepts only what PyJWT accepts, with the same claims."""

from __future__ import annotations

import base64
import doctest
import hashlib
import hmac
import time
from typing import Any

import jwt
import orjson
import pytest

from server import auth, hs256

SECRET = "test-token-secret-0123456789-abcdefghij"
KEY = SECRET.encode()
NOW = int(time.time())


def raw(header: dict[str, Any], payload: Any, key: bytes = KEY) -> str:
    """A token built by hand, so headers and claims PyJWT would not write can be tried."""

    def seg(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = f"{seg(orjson.dumps(header))}.{seg(orjson.dumps(payload))}"
    return f"{signing}.{seg(hmac.new(key, signing.encode(), hashlib.sha256).digest())}"


HS = {"alg": "HS256", "typ": "JWT"}
TOKENS = [
    raw(HS, {"sub": "ada", "exp": NOW + 60}),
    raw({"alg": "HS256"}, {"sub": "ada", "exp": NOW + 60, "name": "Ada"}),
    raw(HS, {"sub": "ada", "exp": NOW + 60.5, "channels": ["a", "b"], "info": {"k": 1}}),
    raw(HS, {"sub": "ada", "exp": NOW - 5}),  # expired, within the leeway
    raw(HS, {"sub": "ada", "exp": NOW - 60}),  # expired
    raw(HS, {"sub": "ada", "exp": NOW + 60, "iat": NOW}),
    raw(HS, {"sub": "ada", "exp": NOW + 60, "iat": NOW + 3600}),  # issued in the future
    raw(HS, {"sub": "ada", "exp": NOW + 60, "iat": "soon"}),
    raw(HS, {"sub": "ada", "exp": str(NOW + 60)}),  # a string exp: PyJWT's call
    raw(HS, {"sub": "ada", "exp": True}),
    raw(HS, {"sub": "ada"}),  # no exp
    raw(HS, {"exp": NOW + 60}),  # no sub
    raw(HS, {"sub": 42, "exp": NOW + 60}),
    raw(HS, {"sub": "ada", "exp": NOW + 60, "aud": "x"}),  # a claim the fast path leaves
    raw(HS, {"sub": "ada", "exp": NOW + 60, "nbf": NOW + 3600}),
    raw(HS, {"sub": "ada", "exp": NOW + 60}, key=b"another key, long enough for HS256!"),
    raw({"alg": "HS256", "kid": "1"}, {"sub": "ada", "exp": NOW + 60}),
    raw({"alg": "none"}, {"sub": "ada", "exp": NOW + 60}),
    raw({"alg": "HS512"}, {"sub": "ada", "exp": NOW + 60}),
    raw(HS, ["not", "an", "object"]),
    jwt.encode({"sub": "ada", "exp": NOW + 60}, SECRET, algorithm="HS256") + "x",
    "a.b",
    "not a token",
    "....",
    "e30.e30.e30",
]


def pyjwt(token: str) -> auth.Identity | str:
    """What verify_token answered before the fast path: PyJWT's claims, or the refusal."""
    try:
        return auth._identity(auth._decode(SECRET, token))
    except auth.TokenError as exc:
        return str(exc)


def ours(token: str) -> auth.Identity | str:
    try:
        return auth.verify_token(SECRET, token)
    except auth.TokenError as exc:
        return str(exc)


@pytest.mark.parametrize("token", TOKENS)
def test_verify_token_answers_as_pyjwt_alone(token: str) -> None:
    assert ours(token) == pyjwt(token)


@pytest.mark.parametrize("token", TOKENS)
def test_the_fast_path_accepts_only_what_pyjwt_accepts(token: str) -> None:
    fast = hs256.claims(KEY, token, auth.LEEWAY_S)
    if fast is not None:
        assert fast == jwt.decode(token, SECRET, algorithms=["HS256"], leeway=auth.LEEWAY_S)


def test_the_common_tokens_take_the_fast_path() -> None:
    now = int(time.time())
    for token in (
        raw(HS, {"sub": "ada", "exp": now + 60}),
        raw({"alg": "HS256"}, {"sub": "ada", "exp": now + 60, "name": "Ada"}),
        raw(HS, {"sub": "ada", "exp": now + 60.5, "channels": ["a"], "info": {"k": 1}}),
        raw(HS, {"sub": "ada", "exp": now - 5}),  # expired, within the leeway
        raw(HS, {"sub": "ada", "exp": now + 60, "iat": now}),
        auth.mint_token(SECRET, "u", 60, name="n"),
    ):
        assert hs256.claims(KEY, token, auth.LEEWAY_S) is not None, token


def test_the_docstring_example() -> None:
    assert doctest.testmod(hs256).failed == 0
