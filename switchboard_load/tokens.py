"""Connection URLs, with connection tokens when the target needs them.

Why mint here: a backend that load-tests its own deployment holds the token secret, and one token
per connection (its own `sub`) lets the server see distinct users, as production would.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt


def mint(secret: str, sub: str, ttl_s: float) -> str:
    """An HS256 connection token with the claims protocol v1 requires: `sub` and `exp`."""
    return jwt.encode({"sub": sub, "exp": int(time.time() + ttl_s)}, secret, algorithm="HS256")


def with_token(url: str, token: str | None) -> str:
    """`url` with `?token=...` added (other query parameters kept)."""
    if not token:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query) + [("token", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class UrlMaker:
    """Gives each connection its URL: a fixed token, a freshly minted one, or none."""

    def __init__(self, url: str, token: str | None, secret: str | None, ttl_s: float) -> None:
        self.url = url
        self.fixed = with_token(url, token)
        self.secret = secret
        self.ttl_s = ttl_s

    def __call__(self, sub: str) -> str:
        if self.secret:
            return with_token(self.url, mint(self.secret, sub, self.ttl_s))
        return self.fixed
