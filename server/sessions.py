"""Server-side sessions and the browser's signed cookie that names one.

The browser holds only the session id, signed with `[security] secret` (so a tampered or forged
cookie is ignored), HttpOnly (page scripts cannot read it), SameSite=Lax (other sites' forms and
fetches do not carry it) and Secure over TLS or always (`[security] secure_cookies`). Everything
else — the user, the expiry — lives in the store, so deleting the session there ends it
everywhere at once.
"""

from __future__ import annotations

from typing import Any

import tornado.web

from server.auth import Identity
from server.store.base import Session, Store, User

COOKIE = "sb_session"


def cookie_options(request: Any) -> dict[str, Any]:
    """HttpOnly and SameSite=Lax; pages add Secure (handlers/pages.py, `secure_cookies`)."""
    return {"httponly": True, "samesite": "Lax"}


async def start(
    handler: tornado.web.RequestHandler, store: Store, user: User, ttl_s: float
) -> Session:
    session = await store.create_session(user.id, ttl_s)
    handler.set_signed_cookie(
        COOKIE, session.id, expires_days=None, max_age=int(ttl_s), **cookie_options(handler.request)
    )
    return session


async def current(
    handler: tornado.web.RequestHandler, store: Store, ttl_s: float
) -> tuple[Session, User] | None:
    """The live session and user named by the request's cookie, or None."""
    raw = handler.get_signed_cookie(COOKIE, max_age_days=ttl_s / 86400)
    if raw is None:
        return None
    session = await store.get_session(raw.decode("ascii", "replace"))
    if session is None:
        return None
    user = await store.get_user(session.user_id)
    return (session, user) if user is not None else None


async def end(
    handler: tornado.web.RequestHandler, store: Store, ttl_s: float
) -> tuple[Session, User] | None:
    """Delete the request's session from the store and the cookie; returns what it was."""
    found = await current(handler, store, ttl_s)
    if found is not None:
        await store.delete_session(found[0].id)
    handler.clear_cookie(COOKIE, **cookie_options(handler.request))
    return found


def identity(session: Session, user: User) -> Identity:
    """A connection's identity from a session: it lapses when the session does."""
    return Identity(user=user.id, name=user.name, session=session.id, expires_at=session.expires_at)
