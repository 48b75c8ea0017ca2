"""The `switchboard.msgpack` subprotocol against a real server: binary frames both ways, the same
messages as JSON, publication data that round-trips, each publication translated once per
process, commands JSON cannot express refused, and JSON clients untouched."""

from __future__ import annotations

import asyncio
import doctest
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import ormsgpack
import pytest
import pytest_asyncio
import tornado.web
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from server import codec
from server.codec import Transcoder
from server.ws import frame as wsframe
from tests.support import RunningServer, http

# JSON values of every kind, edges included: they must come back exactly.
DATA: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    127,
    128,
    -33,
    2**53 + 1,
    2**64 - 1,
    -(2**63),
    0.5,
    -1.25e-300,
    1e308,
    "",
    "naïve ☃ 𝄞",
    "x" * 30_000,
    [],
    {},
    {"nested": [1, {"deep": [None, "a", 2.5]}], "": "empty key"},
    list(range(20)),
    {f"k{i}": i for i in range(20)},
]


def transcoder_of(app: RunningServer) -> Transcoder:
    application = app.server.request_callback
    assert isinstance(application, tornado.web.Application)
    for rule in application.wildcard_router.rules:
        kwargs = getattr(rule, "target_kwargs", {}) or {}
        if "endpoint" in kwargs:  # /ws: its Endpoint serves both the listener and Tornado
            transcoder = kwargs["endpoint"].transcoder
            assert isinstance(transcoder, Transcoder)
            return transcoder
    raise AssertionError("no /ws route with a transcoder")


class Client:
    """A raw protocol client over `websockets`, in either encoding."""

    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self.next_id = 1
        self.frames: list[str | bytes] = []
        self.backlog: list[dict[str, Any]] = []  # pushes read while waiting for a reply
        self.hello: dict[str, Any] = {}

    def decode(self, raw: str | bytes) -> dict[str, Any]:
        if self.binary:
            assert isinstance(raw, bytes), f"expected a binary frame, got {raw!r}"
            msg = ormsgpack.unpackb(raw)
        else:
            assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
            msg = orjson.loads(raw)
        assert isinstance(msg, dict)
        return msg

    async def recv(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), 5)
        self.frames.append(raw)
        return self.decode(raw)

    async def send(self, msg: dict[str, Any]) -> None:
        if self.binary:
            await self.ws.send(ormsgpack.packb(msg))
        else:
            await self.ws.send(orjson.dumps(msg).decode())

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        cmd_id, self.next_id = self.next_id, self.next_id + 1
        await self.send({"id": cmd_id, "op": op, **fields})
        while True:
            msg = await self.recv()
            if msg.get("id") == cmd_id:
                return msg
            self.backlog.append(msg)

    async def ok(self, op: str, **fields: Any) -> Any:
        reply = await self.call(op, **fields)
        assert "error" not in reply, reply
        return reply["result"]

    async def push(self, kind: str) -> dict[str, Any]:
        while True:
            msg = self.backlog.pop(0) if self.backlog else await self.recv()
            if msg.get("push") == kind:
                return msg


@pytest_asyncio.fixture
async def open_client(app: RunningServer) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    opened: list[ClientConnection] = []

    async def open_(*subprotocols: str, expect: str | None = None) -> Client:
        ws = await connect(
            app.ws_url, subprotocols=[Subprotocol(s) for s in subprotocols] or None, max_size=None
        )
        opened.append(ws)
        assert ws.subprotocol == expect
        client = Client(ws, expect == codec.MSGPACK)
        client.hello = hello = await client.recv()
        assert hello["push"] == "hello" and hello["version"] == 1
        return client

    yield open_
    for ws in opened:
        await ws.close()


@pytest.mark.asyncio
async def test_msgpack_client_gets_binary_frames_with_the_same_messages(
    open_client: Callable[..., Awaitable[Client]], app: RunningServer
) -> None:
    mp = await open_client(codec.MSGPACK, codec.JSON, expect=codec.MSGPACK)
    js = await open_client(expect=None)
    for c in (mp, js):
        await c.ok("subscribe", channel="room")
    mp.frames.clear()
    ack = await mp.ok("publish", channel="room", data={"text": "hi"})
    assert ack["offset"] == 1 and isinstance(ack["epoch"], str)
    got_mp, got_js = await mp.push("pub"), await js.push("pub")
    assert got_mp == got_js
    assert got_mp["data"] == {"text": "hi"} and got_mp["info"]["client"] == mp_client_id(mp)
    assert all(isinstance(f, bytes) for f in mp.frames)
    # Replies that embed publications (history) are translated as a whole too.
    page = await mp.ok("history", channel="room")
    assert page["publications"][0]["data"] == {"text": "hi"}
    assert page == await js.ok("history", channel="room")
    assert (await mp.ok("presence", channel="room"))["clients"].keys() == {
        mp_client_id(mp),
        mp_client_id(js),
    }


def mp_client_id(client: Client) -> str:
    return str(client.hello["client"])


@pytest.mark.asyncio
async def test_every_json_value_round_trips_both_ways(
    open_client: Callable[..., Awaitable[Client]], app: RunningServer
) -> None:
    mp = await open_client(codec.MSGPACK, expect=codec.MSGPACK)
    js = await open_client(codec.JSON, expect=codec.JSON)
    for c in (mp, js):
        await c.ok("subscribe", channel="values")
    for value in DATA:
        await mp.ok("publish", channel="values", data=value)
        assert (await mp.push("pub"))["data"] == value
        assert (await js.push("pub"))["data"] == value
    # From a JSON client (and the HTTP API) to a MessagePack one: the same values.
    for value in DATA[:6]:
        await js.ok("publish", channel="values", data=value)
        assert (await mp.push("pub"))["data"] == value
    status, _ = await http(app, "POST", "/api/publish", {"channel": "values", "data": DATA[19]})
    assert status == 200
    pub = await mp.push("pub")
    assert pub["data"] == DATA[19] and "info" not in pub
    # Floats stay floats (1.0 is not 1), integers stay integers.
    await js.send({"id": 999, "op": "publish", "channel": "values", "data": [1.0, 1]})
    raw = None
    while raw is None or mp.decode(raw).get("push") != "pub":
        raw = await asyncio.wait_for(mp.ws.recv(), 5)
    assert isinstance(raw, bytes)
    data = mp.decode(raw)["data"]
    assert type(data[0]) is float and type(data[1]) is int
    assert b"\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\x01" in raw  # float64 1.0, then fixint 1


@pytest.mark.asyncio
async def test_a_publication_is_translated_once_per_process(
    open_client: Callable[..., Awaitable[Client]], app: RunningServer
) -> None:
    transcoder = transcoder_of(app)
    json_clients = [await open_client() for _ in range(3)]
    for c in json_clients:
        await c.ok("subscribe", channel="fan")
    before = transcoder.encoded
    await http(app, "POST", "/api/publish", {"channel": "fan", "data": 1})
    for c in json_clients:
        await c.push("pub")
    assert transcoder.encoded == before  # nobody speaks MessagePack: nothing is translated
    mp_clients = [await open_client(codec.MSGPACK, expect=codec.MSGPACK) for _ in range(5)]
    for c in mp_clients:
        await c.ok("subscribe", channel="fan")
    before = transcoder.encoded
    await http(app, "POST", "/api/publish", {"channel": "fan", "data": 2})
    for c in [*mp_clients, *json_clients]:
        assert (await c.push("pub"))["data"] == 2
    assert transcoder.encoded == before + 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (ormsgpack.packb({"id": 3, "op": "publish", "channel": "x", "data": b"raw"}), "bin"),
        (ormsgpack.packb({"id": 3, "op": "publish", "channel": "x", "data": math.nan}), "NaN"),
        (ormsgpack.packb({"id": 3, "op": "publish", "channel": "x", "data": [math.inf]}), "NaN"),
        (
            ormsgpack.packb(
                {"id": 3, "op": "publish", "data": {1: 2}}, option=ormsgpack.OPT_NON_STR_KEYS
            ),
            "MessagePack",
        ),
        (b"\x82\xa2id\x03\xa2op\xd4\x01\x00", "MessagePack"),  # an ext value
        (b"\xc1", "MessagePack"),
        (ormsgpack.packb([1, 2]), "map"),
        (ormsgpack.packb({"op": "ping"}), "`id`"),
        (ormsgpack.packb({"id": 3, "op": 7}), "`op`"),
    ],
)
async def test_commands_json_cannot_express_are_bad_requests(
    open_client: Callable[..., Awaitable[Client]], frame: bytes, message: str
) -> None:
    mp = await open_client(codec.MSGPACK, expect=codec.MSGPACK)
    await mp.ws.send(frame)
    reply = await mp.recv()
    assert reply["error"]["code"] == "bad_request" and message in reply["error"]["message"]
    has_id = frame.startswith(b"\x82\xa2id") or b"\xa2id\x03" in frame
    assert reply.get("id") == (3 if has_id else None)
    assert await mp.ok("ping") == {}  # refused, not disconnected


@pytest.mark.asyncio
async def test_a_text_frame_on_a_msgpack_connection_is_refused(
    open_client: Callable[..., Awaitable[Client]],
) -> None:
    mp = await open_client(codec.MSGPACK, expect=codec.MSGPACK)
    await mp.ws.send('{"id":1,"op":"ping"}')
    reply = await mp.recv()
    assert reply["error"]["code"] == "bad_request" and "binary" in reply["error"]["message"]


@pytest.mark.asyncio
async def test_unknown_subprotocols_leave_json(
    open_client: Callable[..., Awaitable[Client]],
) -> None:
    other = await open_client("chat.v9", expect=None)
    assert await other.ok("ping") == {}
    json_first = await open_client(codec.JSON, codec.MSGPACK, expect=codec.JSON)
    assert await json_first.ok("ping") == {}


@pytest.mark.asyncio
async def test_disconnect_push_and_close_reach_a_msgpack_client(
    open_client: Callable[..., Awaitable[Client]], app: RunningServer
) -> None:
    mp = await open_client(codec.MSGPACK, expect=codec.MSGPACK)
    for conn in list(app.node.hub.clients()):
        conn.disconnect(4003, "go away", False)  # type: ignore[attr-defined]
    push = await mp.push("disconnect")
    assert push == {"push": "disconnect", "code": 4003, "reason": "go away", "reconnect": False}
    await mp.ws.wait_closed()
    assert mp.ws.close_code == 4003


def test_transcoder_passes_control_frames_and_remembers_one_frame() -> None:
    t = Transcoder()
    assert t.binary(wsframe.PING) is wsframe.PING
    a = wsframe.text(b'{"a":1}')
    first = t.binary(a)
    assert t.binary(a) is first and t.encoded == 1
    assert ormsgpack.unpackb(first[2:]) == {"a": 1}
    big = wsframe.text(orjson.dumps({"s": "y" * 70_000}))
    assert ormsgpack.unpackb(t.binary(big)[10:]) == {"s": "y" * 70_000}
    assert t.encoded == 2


def test_doctests() -> None:
    for module in (codec, wsframe):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0
