"""MessagePack for the `switchboard.msgpack` subprotocol: the same messages, in another encoding.

The server builds every frame as JSON (server.protocol) and publications stay JSON everywhere
else (broker, store, HTTP API), so MessagePack is a translation at the edge of a connection:
commands from a MessagePack client are decoded and checked here, and the JSON text frames meant
for it are turned into binary frames by a `Transcoder`, which one process shares between all
its MessagePack connections. The node hands the same frame object to every subscriber of a
publication, so the transcoder remembers its last frame and a publication is translated once
per process, not once per subscriber; JSON connections never reach this module.

The mapping (docs/protocol.md): nil, booleans, integers (64 bits, as in JSON), floats, strings,
arrays and maps with string keys. A command holding anything else (bin, ext, a map key that is
not a string, NaN or an infinity) is refused with `bad_request`, as a JSON command holding
something JSON cannot express would be.

>>> t = Transcoder()
>>> t.binary(b'\\x81\\x0b{"push":"x"}')
b'\\x82\\x08\\x81\\xa4push\\xa1x'
>>> parse_command(b'\\x82\\xa2id\\x01\\xa2op\\xa4ping')
Command(id=1, op='ping', args={'id': 1, 'op': 'ping'})
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import ormsgpack

from server.protocol import MAX_ID, Command, FrameError, command_of
from server.ws import frame as wsframe

#: The WebSocket subprotocols the server speaks, the one chosen when a client offers both first.
JSON = "switchboard.json"
MSGPACK = "switchboard.msgpack"

#: Bytes that start a float or a bin value: only a command holding one of them is walked for
#: values JSON cannot carry (they also occur inside strings and numbers: a walk, never a miss).
_SUSPECT = (b"\xca", b"\xcb", b"\xc4", b"\xc5", b"\xc6")


def dumps(obj: Any) -> bytes:
    """Encode a JSON-like value as MessagePack."""
    return ormsgpack.packb(obj)


def from_json(payload: bytes | memoryview) -> bytes:
    """The MessagePack of a JSON document."""
    return ormsgpack.packb(orjson.loads(payload))


def parse_command(frame: str | bytes) -> Command:
    """Decode one MessagePack frame into a Command, or raise FrameError (as JSON's parser)."""
    if isinstance(frame, str):
        raise FrameError("this connection speaks MessagePack: send binary frames")
    try:
        obj = ormsgpack.unpackb(frame)
    except (ValueError, TypeError) as exc:
        raise FrameError(f"frame is not valid MessagePack: {exc}", _lenient_id(frame)) from None
    if not isinstance(obj, dict):
        raise FrameError("frame must be a MessagePack map")
    command = command_of(obj)
    if any(s in frame for s in _SUSPECT):
        problem = _not_json(obj)
        if problem is not None:
            raise FrameError(problem, command.id)
    return command


def _lenient_id(frame: bytes) -> int | None:
    """The `id` of a frame refused for an ext value or a key that is not a string, so that its
    error reply can name the command, as a JSON command's would."""
    try:
        obj = ormsgpack.unpackb(
            frame, ext_hook=lambda _tag, _data: None, option=ormsgpack.OPT_NON_STR_KEYS
        )
    except (ValueError, TypeError):
        return None
    cmd_id = obj.get("id") if isinstance(obj, dict) else None
    return cmd_id if type(cmd_id) is int and 0 <= cmd_id <= MAX_ID else None


def _not_json(value: Any) -> str | None:
    """Why `value` (decoded MessagePack) has no JSON equivalent, or None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return "NaN and infinities have no JSON equivalent"
        elif isinstance(v, bytes):
            return "bin values have no JSON equivalent (send strings)"
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


class Transcoder:
    """Turns the server's JSON text frames into binary MessagePack frames, each frame once.

    The last frame translated is kept by identity: a delivery hands every subscriber the same
    bytes object, so all but the first MessagePack subscriber get the stored translation.
    Frames other than text frames (pings) pass unchanged. `encoded` counts translations.
    """

    __slots__ = ("_json", "_binary", "encoded")

    def __init__(self) -> None:
        self._json: bytes | None = None
        self._binary = b""
        self.encoded = 0

    def binary(self, frame: bytes) -> bytes:
        if frame is self._json:
            return self._binary
        payload = wsframe.text_payload(frame)
        if payload is None:
            return frame
        binary = wsframe.encode(wsframe.BINARY, from_json(payload))
        self._json, self._binary = frame, binary
        self.encoded += 1
        return binary
