"""Protocol v1 on the wire: error and close codes, command parsing, frame encoding.

Everything a client sees is shaped here, so the contract in docs/protocol.md has one home.
Publications travel as *bodies*: the JSON object of a publication without its `offset`, encoded
once by the publisher. A node turns a body into a push frame by splicing the offset in front,
so a publication is serialised once per process, never once per subscriber.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

VERSION = 1


class Code(StrEnum):
    """Error codes of protocol v1."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    LIMIT_EXCEEDED = "limit_exceeded"
    UNAVAILABLE = "unavailable"
    DISABLED = "disabled"
    INTERNAL = "internal"


class Close:
    """WebSocket close codes of protocol v1."""

    NORMAL = 1000
    GOING_AWAY = 1001
    TOO_BIG = 1009
    RESTART = 1012
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    POLICY = 4008
    TOO_SLOW = 4009
    INTERNAL = 4500


#: HTTP status for each error code, for the HTTP API.
HTTP_STATUS: dict[Code, int] = {
    Code.BAD_REQUEST: 400,
    Code.UNKNOWN_OP: 400,
    Code.UNAUTHORIZED: 401,
    Code.FORBIDDEN: 403,
    Code.NOT_FOUND: 404,
    Code.LIMIT_EXCEEDED: 429,
    Code.UNAVAILABLE: 503,
    Code.DISABLED: 400,
    Code.INTERNAL: 500,
}


class ProtocolError(Exception):
    """A refused command: becomes an error reply, never a closed connection."""

    def __init__(self, code: Code, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        #: the HTTP API's status when it is not the code's usual one (413 for sizes)
        self.status = status or HTTP_STATUS[code]

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


OPS = frozenset(
    {"auth", "subscribe", "unsubscribe", "publish", "history", "presence", "presence_stats", "ping"}
)
MAX_ID = 2**53 - 1  # the largest integer a JavaScript client can hold exactly
_CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-:.@#,=]{1,255}")
_PERSONAL_RE = re.compile(r"#([A-Za-z0-9_\-.@=]+(?:,[A-Za-z0-9_\-.@=]+)*)$")


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed client command; `args` holds the op's own fields, unchecked."""

    id: int
    op: str
    args: dict[str, Any]


class FrameError(Exception):
    """A frame that is not a command at all: answered without an `id` when none is known."""

    def __init__(self, message: str, cmd_id: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cmd_id = cmd_id


#: 19 digits in a row: JSON numbers are ASCII (`\d` would test every Unicode digit, at twice
#: the cost per frame).
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19}")
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def _exact_int(text: str) -> int:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError("integer beyond 64 bits")
    return value


#: Deepest nesting of arrays and objects a frame or HTTP body may have: orjson encodes no
#: deeper (and the stdlib parser of check_exact hits Python's recursion limit near 1,000), so
#: a deeper document could be decoded but never sent on. It gets bad_request instead.
MAX_DEPTH = 254


def check_depth(obj: Any, raw: str | bytes) -> None:
    """Raise ValueError if `obj` (decoded from `raw`) nests deeper than MAX_DEPTH.

    A document with no more brackets than the limit passes at once. Others are encoded once
    more, which is how orjson measures depth (at C speed: about 1 ms for the worst 64 KB frame).
    """
    if isinstance(raw, str):
        brackets = raw.count("[") + raw.count("{")
    else:
        brackets = raw.count(b"[") + raw.count(b"{")
    if brackets <= MAX_DEPTH:
        return
    try:
        orjson.dumps(obj)
    except orjson.JSONEncodeError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None


def loads(raw: str | bytes) -> Any:
    """Decode JSON, refusing integers orjson would silently round (beyond 64 bits) and
    nesting deeper than MAX_DEPTH."""
    obj = orjson.loads(raw)
    check_depth(obj, raw)
    check_exact(raw)
    return obj


def check_exact(raw: str | bytes) -> None:
    """Raise ValueError if the JSON holds an integer outside -2^63 .. 2^64-1.

    Only a document with a run of 19 or more digits is parsed a second time, exactly, so the
    check costs nothing on ordinary frames.
    """
    if isinstance(raw, str):
        if not _LONG_DIGITS.search(raw):
            return
        text = raw
    else:  # searched as it came: decoding first cost twice the search
        if not _LONG_DIGITS_BYTES.search(raw):
            return
        text = raw.decode("utf-8", "replace")
    try:
        json.loads(text, parse_int=_exact_int)
    except ValueError:
        raise ValueError("integers must fit in 64 bits (send larger ones as strings)") from None
    except RecursionError:  # callers check depth first; never let it escape regardless
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None


def parse_command(frame: str | bytes) -> Command:
    """Decode one text frame into a Command, or raise FrameError (malformed) / ProtocolError."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"frame is not valid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise FrameError("frame must be a JSON object")
    cmd_id = _command_id(obj)
    try:
        check_depth(obj, frame)
        check_exact(frame)
    except ValueError as exc:
        raise FrameError(str(exc), cmd_id) from None
    return _with_op(obj, cmd_id)


def command_of(obj: dict[str, Any]) -> Command:
    """A Command from a frame another encoding decoded (server.codec): `id` and `op` checked."""
    return _with_op(obj, _command_id(obj))


def _command_id(obj: dict[str, Any]) -> int:
    cmd_id = obj.get("id")
    if type(cmd_id) is not int or not 0 <= cmd_id <= MAX_ID:
        raise FrameError("`id` must be a non-negative integer")
    return cmd_id


def _with_op(obj: dict[str, Any], cmd_id: int) -> Command:
    op = obj.get("op")
    if not isinstance(op, str):
        raise FrameError("`op` must be a string", cmd_id)
    return Command(cmd_id, op, obj)


def check_channel(name: Any) -> str:
    """Return a valid channel name or raise bad_request."""
    if not isinstance(name, str) or not _CHANNEL_RE.fullmatch(name):
        raise ProtocolError(
            Code.BAD_REQUEST,
            "`channel` must be 1 to 255 characters of A-Z a-z 0-9 _ - : . @ # , =",
        )
    return name


def split_channel(channel: str) -> tuple[str, str]:
    """Split `ns:rest` into (namespace, rest); a name without ':' is in namespace `default`."""
    ns, sep, rest = channel.partition(":")
    return (ns, rest) if sep else ("default", channel)


def personal_users(rest: str) -> tuple[str, ...] | None:
    """The users a personal channel (`name#ID` or `name#ID1,ID2`) belongs to, or None."""
    m = _PERSONAL_RE.search(rest)
    return tuple(m.group(1).split(",")) if m else None


# -- encoding ---------------------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def reply_ok(cmd_id: int, result: Any) -> bytes:
    return orjson.dumps({"id": cmd_id, "ok": True, "result": result})


def reply_error(cmd_id: int | None, code: Code, message: str) -> bytes:
    err = {"code": code.value, "message": message}
    return orjson.dumps({"error": err} if cmd_id is None else {"id": cmd_id, "error": err})


def pub_body(channel: str, data: Any, info: dict[str, str | None] | None, ts_ms: int) -> bytes:
    """The JSON of a publication without `offset`: encoded once by whoever publishes."""
    pub: dict[str, Any] = {"channel": channel, "data": data}
    if info is not None:
        pub["info"] = info
    pub["ts"] = ts_ms
    return orjson.dumps(pub)


def pub_json(offset: int, body: bytes) -> bytes:
    """A full publication object: the body with its offset spliced in."""
    return b'{"offset":%d,%s' % (offset, body[1:])


def pub_push(offset: int, body: bytes) -> bytes:
    """The `pub` push frame for a publication."""
    return b'{"push":"pub","offset":%d,%s' % (offset, body[1:])


def pubs_fragment(pubs: list[tuple[int, bytes]]) -> orjson.Fragment:
    """A JSON array of publications from (offset, body) pairs, embedded without re-encoding."""
    return orjson.Fragment(b"[" + b",".join(pub_json(o, b) for o, b in pubs) + b"]")


def join_leave_push(kind: str, channel: str, client: str, user: str | None) -> bytes:
    return orjson.dumps({"push": kind, "channel": channel, "client": client, "user": user})


def disconnect_push(code: int, reason: str, reconnect: bool, delay_ms: int | None = None) -> bytes:
    push: dict[str, Any] = {"push": "disconnect", "code": code, "reason": reason}
    push["reconnect"] = reconnect
    if delay_ms is not None:
        push["reconnect_delay_ms"] = delay_ms
    return orjson.dumps(push)


def unsubscribed_push(channel: str, reason: str) -> bytes:
    return orjson.dumps({"push": "unsubscribed", "channel": channel, "reason": reason})


def history_args(args: dict[str, Any]) -> tuple[int | None, int, bool]:
    """Validated `since`, `limit` and `reverse` of a history request."""
    since, limit, reverse = args.get("since"), args.get("limit", 100), args.get("reverse", False)
    if since is not None and (type(since) is not int or since < 0):
        raise ProtocolError(Code.BAD_REQUEST, "`since` must be an integer offset >= 0")
    if type(limit) is not int or not 1 <= limit <= 1000:
        raise ProtocolError(Code.BAD_REQUEST, "`limit` must be an integer from 1 to 1000")
    if not isinstance(reverse, bool):
        raise ProtocolError(Code.BAD_REQUEST, "`reverse` must be true or false")
    return since, limit, reverse
