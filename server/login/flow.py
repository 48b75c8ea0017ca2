"""The state of one login in progress, bound to the browser that started it.

The browser holds it in a signed, short-lived, HttpOnly cookie scoped to /login: the `state`
sent to the provider must come back to the same browser (so an attacker cannot make a victim
complete the attacker's login), the `nonce` must come back inside the ID token (so a token
minted for another login is refused), and the PKCE verifier never leaves this server and the
browser's cookie (so an intercepted code is useless). The cookie is cleared on every callback and
each state is accepted once by this process, so replaying a callback fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass

import orjson

FLOW_TTL_S = 600.0


@dataclass(frozen=True, slots=True)
class Flow:
    provider: str
    state: str
    nonce: str
    verifier: str
    expires_at: float

    @classmethod
    def start(cls, provider: str, ttl_s: float = FLOW_TTL_S) -> Flow:
        return cls(
            provider,
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(48),
            time.time() + ttl_s,
        )

    @property
    def challenge(self) -> str:
        """The PKCE S256 code challenge of the verifier (RFC 7636)."""
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> Flow | None:
        try:
            data = orjson.loads(raw)
            return cls(**data) if isinstance(data, dict) else None
        except (orjson.JSONDecodeError, TypeError):
            return None

    def matches(self, provider: str, state: str | None) -> bool:
        """Same provider, not expired, and the returned state equal (in constant time)."""
        return (
            self.provider == provider
            and self.expires_at > time.time()
            and state is not None
            and hmac.compare_digest(self.state.encode(), state.encode())
        )


class UsedStates:
    """States already accepted, kept until they expire anyway, so each is accepted once."""

    def __init__(self) -> None:
        self._used: dict[str, float] = {}

    def consume(self, flow: Flow) -> bool:
        """True the first time a flow's state is seen; False on a replay."""
        now = time.time()
        for state in [s for s, exp in self._used.items() if exp <= now]:
            del self._used[state]
        if flow.state in self._used:
            return False
        self._used[flow.state] = flow.expires_at
        return True
