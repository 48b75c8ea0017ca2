"""The bytes of an event stream (the WHATWG HTML standard, "Server-sent events").

Every protocol frame is one `message` event whose `data` is the frame's JSON on one line (JSON
as the server encodes it never holds a raw line break) and whose `id` is `<session>:<n>`, so a
browser's automatic reconnect names the session and the last frame it got in `Last-Event-ID`.

>>> message(b"s1", 7, b'{"push":"hello"}')
b'id: s1:7\\ndata: {"push":"hello"}\\n\\n'
>>> parse_last_event_id("tag.abc:12")
('tag.abc', 12)
>>> parse_last_event_id("nonsense") is None
True
"""

from __future__ import annotations

from typing import Any

import orjson

#: A comment line: keeps proxies from timing out a quiet stream; clients ignore it.
KEEPALIVE = b":\n\n"
#: How long a browser waits before reconnecting a dropped stream (the `retry` field), in ms.
RETRY_MS = 1000


def message(session: bytes, seq: int, payload: bytes | memoryview) -> bytes:
    """One protocol frame as an event."""
    return b"id: %s:%d\ndata: %s\n\n" % (session, seq, payload)


def named(kind: str, body: dict[str, Any]) -> bytes:
    """A transport event (`session`, `close`): not a protocol frame, so it carries no id."""
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(body))


def session(session_id: str) -> bytes:
    """The first event of every response: the session commands are posted to."""
    return b"retry: %d\n" % RETRY_MS + named("session", {"session": session_id})


def close(code: int, reason: str) -> bytes:
    """The last event: the session is over, as a WebSocket close frame would say."""
    return named("close", {"code": code, "reason": reason})


def parse_last_event_id(value: str) -> tuple[str, int] | None:
    """The session and the sequence number of a `Last-Event-ID`, or None if it is not ours."""
    sid, sep, seq = value.strip().rpartition(":")
    if not sep or not sid or not seq.isascii() or not seq.isdigit() or len(seq) > 18:
        return None
    return sid, int(seq)
