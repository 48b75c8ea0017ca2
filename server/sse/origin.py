"""Who may use the event stream and post commands: the WebSocket endpoint's origin rule.

A request without an Origin header comes from a program, not a page, and is let through (it
cannot carry a victim's cookies); a page's request names its origin, which must be this site's
or listed in `[security] allowed_origins` ("*" allows any).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit


def allowed(origin: str | None, host: str, allowed_origins: Sequence[str]) -> bool:
    if origin is None:
        return True
    if "*" in allowed_origins or origin in allowed_origins:
        return True
    return same_site(origin, host)


def same_site(origin: str, host: str) -> bool:
    """The origin is this server's own (the Host the request was sent to)."""
    return urlsplit(origin).netloc.lower() == host.lower()
