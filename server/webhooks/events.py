"""Webhook events: what a backend receives, and how it checks that Switchboard sent it.

A body is `{"id", "type", "time", "data"}`, encoded once when the event is made and sent byte
for byte on every attempt, so its signature (`X-Switchboard-Signature: sha256=<hex>`, the
HMAC-SHA256 of the body with `[webhooks] secret`) stays the same across retries.

    >>> body = b'{"id":"evt_1","type":"user.online","time":1,"data":{"user":"42"}}'
    >>> verify("a-secret-of-16-chars", body, signature("a-secret-of-16-chars", body))
    True
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

USER_ONLINE = "user.online"
USER_OFFLINE = "user.offline"
CHANNEL_OCCUPIED = "channel.occupied"
CHANNEL_VACATED = "channel.vacated"
PUBLICATION = "publication"

SIGNATURE_HEADER = "X-Switchboard-Signature"
ID_HEADER = "X-Switchboard-Event-Id"
TYPE_HEADER = "X-Switchboard-Event"


@dataclass(frozen=True, slots=True)
class Event:
    """One event. `key` orders it: events of one key are sent one at a time, by `seq`."""

    id: str
    type: str
    key: str
    seq: int
    body: bytes
    created: float  # seconds since the epoch: retries stop `retry_for_s` after this


def make(type_: str, data: dict[str, Any], key: str, seq: int) -> Event:
    now = time.time()
    event_id = f"evt_{secrets.token_hex(12)}"
    body = orjson.dumps({"id": event_id, "type": type_, "time": int(now * 1000), "data": data})
    return Event(event_id, type_, key, seq, body, now)


def signature(secret: str, body: bytes) -> str:
    """The `X-Switchboard-Signature` header of a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """True when `header` is the signature of `body` (compared in constant time)."""
    return hmac.compare_digest(signature(secret, body), header)


class SeqClock:
    """Increasing sequence numbers from this process's clock, in microseconds.

    Redis claims use Redis's clock in the same unit, so numbers from both stay comparable.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last
