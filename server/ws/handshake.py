"""The WebSocket opening handshake (RFC 6455 §4.2), read straight from the first bytes received.

Only the plain case is read here: one complete `GET` head in HTTP/1.1, every header once, an
upgrade Tornado's WebSocketHandler would accept. Anything else (`Request.parse` or `upgradable`
says no) goes to Tornado, which reads it again and answers it as it always has, refusals
included; so this path never refuses anything itself.

>>> r = Request.parse(b"GET /ws?token=abc HTTP/1.1\\r\\nHost: h\\r\\nUpgrade: websocket\\r\\n"
...                   b"Connection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
...                   b"Sec-WebSocket-Version: 13\\r\\n\\r\\n")
>>> r.path, r.query, upgradable(r)
('/ws', 'token=abc', True)
>>> response(r)[-37:]
b'ept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\\r\\n\\r\\n'
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

#: A head longer than this is left to Tornado (browsers' heads with cookies fit easily).
MAX_HEAD = 8192
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Sec-WebSocket-Version values Tornado serves with its RFC 6455 protocol.
_VERSIONS = ("13", "8", "7")


@dataclass(frozen=True, slots=True)
class Request:
    """An upgrade request's head: path, raw query, and headers by lower-case name."""

    path: str
    query: str
    headers: dict[str, str]
    #: Bytes of the head, the blank line included: what to consume from the socket.
    size: int

    @classmethod
    def parse(cls, data: bytes) -> Request | None:
        """The request whose head `data` starts with, or None to leave it to Tornado."""
        end = data.find(b"\r\n\r\n", 0, MAX_HEAD)
        if end < 0:
            return None
        try:
            lines = data[:end].decode("ascii").split("\r\n")
        except UnicodeDecodeError:
            return None
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
            return None
        path, _, query = parts[1].partition("?")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            key = name.lower()
            if not sep or not name or name != name.strip() or key in headers:
                return None  # folded lines, odd names, repeated headers: Tornado's to judge
            headers[key] = value.strip()
        return cls(path, query, headers, end + 4)


def upgradable(req: Request) -> bool:
    """Whether Tornado's WebSocketHandler would upgrade this request (before its origin check)."""
    h = req.headers
    return (
        h.get("upgrade", "").lower() == "websocket"
        and "upgrade" in (s.strip().lower() for s in h.get("connection", "").split(","))
        and h.get("sec-websocket-version") in _VERSIONS
        and bool(h.get("host"))
        and bool(h.get("sec-websocket-key"))
    )


def subprotocols(req: Request) -> list[str]:
    """The subprotocols the client offers, in its order (as Tornado reads them)."""
    offered = req.headers.get("sec-websocket-protocol")
    return [s.strip() for s in offered.split(",")] if offered else []


def cross_origin_allowed(req: Request, check_origin: Callable[[str], bool]) -> bool:
    """Tornado's cross-origin rule for WebSockets (RequestHandler._check_cross_origin).

    Fetch metadata first: same-origin or a direct navigation pass; a cross-site request passes
    only if `check_origin` accepts its Origin. Without it, a request without Origin is not from
    a browser and passes; otherwise the Origin must name this host or be accepted.
    """
    h = req.headers
    site = h.get("sec-fetch-site")
    origin = h.get("origin")
    if site is None:
        if origin is None:
            return True
        return urlsplit(origin).netloc.lower() == h.get("host", "").lower() or check_origin(origin)
    if site in ("same-origin", "none"):
        return True
    return bool(origin) and check_origin(origin)  # type: ignore[arg-type]


def accept_value(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (§4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def response(req: Request, subprotocol: str | None = None) -> bytes:
    """The 101 response that completes the handshake, naming the chosen subprotocol if any."""
    chosen = b"Sec-WebSocket-Protocol: %s\r\n" % subprotocol.encode() if subprotocol else b""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %s\r\n%s\r\n"
    ) % (accept_value(req.headers["sec-websocket-key"]).encode(), chosen)
