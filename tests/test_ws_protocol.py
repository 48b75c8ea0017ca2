"""Protocol v1 over a real WebSocket: every command, push, error code and close code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import jwt
import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from server.auth import mint_token
from tests.support import TOKEN_SECRET, RunningServer, WsClient, http, ws_open

pytestmark = pytest.mark.asyncio
Connect = Callable[..., Awaitable[WsClient]]


def token(user: str = "42", ttl: float = 60, **kw: object) -> str:
    return mint_token(TOKEN_SECRET, user, ttl, **kw)  # type: ignore[arg-type]


async def test_hello(app: RunningServer, ws_connect: Connect) -> None:
    c = await ws_connect()
    h = c.hello
    assert h["push"] == "hello" and h["version"] == 1 and h["user"] is None
    assert h["node"] == app.node.id and h["ping_interval"] == 25 and len(h["client"]) >= 8
    other = await ws_connect()
    assert other.hello["client"] != h["client"]


async def test_ping(ws_connect: Connect) -> None:
    c = await ws_connect()
    assert await c.call("ping") == {"id": 1, "ok": True, "result": {}}


async def test_subscribe_publish_unsubscribe(ws_connect: Connect) -> None:
    a, b = await ws_connect(), await ws_connect()
    first = await a.ok("subscribe", channel="room")
    assert first["offset"] == 0 and first["recovered"] is True and first["missed"] == []
    epoch = first["epoch"]
    for i in range(1, 4):
        assert await b.ok("publish", channel="room", data={"n": i}) == {"offset": i, "epoch": epoch}
    for i in range(1, 4):
        pub = await a.push_of("pub")
        assert pub["offset"] == i and pub["data"] == {"n": i} and pub["channel"] == "room"
        assert pub["info"] == {"user": None, "client": b.hello["client"]}
        assert abs(pub["ts"] - time.time() * 1000) < 5000
    assert await a.ok("unsubscribe", channel="room") == {}
    await b.ok("publish", channel="room", data="after")
    await a.ok("ping")  # a publication after unsubscribing would have arrived before this reply
    assert a.pushes.empty()


async def test_subscribe_twice_is_refused(ws_connect: Connect) -> None:
    c = await ws_connect()
    await c.ok("subscribe", channel="room")
    reply = await c.call("subscribe", channel="room")
    assert reply["error"]["code"] == "bad_request"


async def test_publisher_gets_own_publication_once(ws_connect: Connect) -> None:
    c = await ws_connect()
    await c.ok("subscribe", channel="echo")
    await c.ok("publish", channel="echo", data=1)
    assert (await c.push_of("pub"))["data"] == 1
    await c.ok("ping")
    assert c.pushes.empty()


async def test_recovery_with_since(ws_connect: Connect) -> None:
    a = await ws_connect()
    sub = await a.ok("subscribe", channel="rec")
    for i in range(5):
        await a.ok("publish", channel="rec", data=i)
    b = await ws_connect()
    since = {"offset": 2, "epoch": sub["epoch"]}
    r = await b.ok("subscribe", channel="rec", since=since)
    assert r["recovered"] is True and r["offset"] == 5
    assert [p["offset"] for p in r["missed"]] == [3, 4, 5]
    assert [p["data"] for p in r["missed"]] == [2, 3, 4]
    await a.ok("publish", channel="rec", data="live")
    assert (await b.push_of("pub"))["offset"] == 6


async def test_recovery_wrong_epoch_is_not_recovered(ws_connect: Connect) -> None:
    a = await ws_connect()
    await a.ok("subscribe", channel="rec2")
    await a.ok("publish", channel="rec2", data=1)
    b = await ws_connect()
    r = await b.ok("subscribe", channel="rec2", since={"offset": 0, "epoch": "nope"})
    assert r["recovered"] is False and r["missed"] == [] and r["offset"] == 1


async def test_recovery_beyond_history_is_incomplete(ws_connect: Connect) -> None:
    a, p = await ws_connect(), await ws_connect()
    epoch = (await a.ok("subscribe", channel="chat-ish"))["epoch"]
    # The default namespace keeps 100, plus its unstored window (100) for recovery's sake.
    # Two publishers: one would pass the command burst (200) when the server answers fast.
    for i in range(205):
        await (a if i % 2 else p).ok("publish", channel="chat-ish", data=i)
    b = await ws_connect()
    r = await b.ok("subscribe", channel="chat-ish", since={"offset": 1, "epoch": epoch})
    assert r["recovered"] is False
    assert [p["offset"] for p in r["missed"]] == list(range(6, 206))


async def test_recovery_in_namespace_without_history(ws_connect: Connect) -> None:
    a = await ws_connect()
    epoch = (await a.ok("subscribe", channel="quiet:x"))["epoch"]
    await a.ok("publish", channel="quiet:x", data=1)
    r = await a.call("history", channel="quiet:x")
    assert r["error"]["code"] == "disabled"
    b = await ws_connect()
    r2 = await b.ok("subscribe", channel="quiet:x", since={"offset": 0, "epoch": epoch})
    assert r2["recovered"] is False and r2["offset"] == 1


async def test_history(ws_connect: Connect) -> None:
    c = await ws_connect()
    for i in range(10):
        await c.ok("publish", channel="hist", data=i)
    h = await c.ok("history", channel="hist", limit=3)
    assert [p["offset"] for p in h["publications"]] == [1, 2, 3] and h["offset"] == 10
    h = await c.ok("history", channel="hist", since=7)
    assert [p["offset"] for p in h["publications"]] == [8, 9, 10]
    h = await c.ok("history", channel="hist", reverse=True, limit=2)
    assert [p["offset"] for p in h["publications"]] == [10, 9]
    for bad in ({"limit": 0}, {"limit": 1001}, {"since": -1}, {"reverse": "yes"}):
        r = await c.call("history", channel="hist", **bad)
        assert r["error"]["code"] == "bad_request", bad


async def test_presence_and_join_leave(ws_connect: Connect) -> None:
    a = await ws_connect()
    await a.ok("subscribe", channel="pres")
    b = await ws_connect(f"?token={token('7', name='Ada')}")
    await b.ok("subscribe", channel="pres")
    join = await a.push_of("join")
    assert join == {"push": "join", "channel": "pres", "client": b.hello["client"], "user": "7"}
    p = await a.ok("presence", channel="pres")
    assert p["clients"] == {
        a.hello["client"]: {"user": None, "name": None},
        b.hello["client"]: {"user": "7", "name": "Ada"},
    }
    await b.close()
    leave = await a.push_of("leave")
    assert leave["client"] == b.hello["client"] and leave["push"] == "leave"
    p = await a.ok("presence", channel="pres")
    assert list(p["clients"]) == [a.hello["client"]]


async def test_join_not_sent_to_joiner_and_presence_disabled(ws_connect: Connect) -> None:
    a = await ws_connect()
    await a.ok("subscribe", channel="quiet:p")
    b = await ws_connect()
    await b.ok("subscribe", channel="quiet:p")
    r = await a.call("presence", channel="quiet:p")
    assert r["error"]["code"] == "disabled"
    assert a.pushes.empty() and b.pushes.empty()


async def test_error_codes(ws_connect: Connect) -> None:
    c = await ws_connect()
    assert (await c.call("nope"))["error"]["code"] == "unknown_op"
    assert (await c.call("subscribe"))["error"]["code"] == "bad_request"
    assert (await c.call("subscribe", channel="bad channel!"))["error"]["code"] == "bad_request"
    assert (await c.call("subscribe", channel="x" * 256))["error"]["code"] == "bad_request"
    assert (await c.call("subscribe", channel="nons:x"))["error"]["code"] == "not_found"
    assert (await c.call("subscribe", channel="chat:x"))["error"]["code"] == "unauthorized"
    assert (await c.call("publish", channel="feed:x", data=1))["error"]["code"] == "forbidden"
    assert (await c.call("publish", channel="sub:x", data=1))["error"]["code"] == "forbidden"
    assert (await c.call("publish", channel="chat:x", data=1))["error"]["code"] == "unauthorized"
    assert (await c.call("publish", channel="room"))["error"]["code"] == "bad_request"
    assert (await c.call("subscribe", channel="user#42"))["error"]["code"] == "unauthorized"
    reply = await c.call("subscribe", channel="room", since={"offset": "x"})
    assert reply["error"]["code"] == "bad_request" and reply["error"]["message"]


async def test_subscribers_namespace_allows_subscribers(ws_connect: Connect) -> None:
    c = await ws_connect()
    await c.ok("subscribe", channel="sub:x")
    assert (await c.ok("publish", channel="sub:x", data=1))["offset"] == 1


async def test_frame_errors_without_id(ws_connect: Connect) -> None:
    c = await ws_connect()
    for frame in (
        "not json",
        "[1,2]",
        '"str"',
        '{"op":"ping"}',
        '{"id":-1,"op":"ping"}',
        '{"id":1.5,"op":"ping"}',
    ):
        c.send_raw(frame)
        err = await asyncio.wait_for(c.errors.get(), 5)
        assert "id" not in err and err["error"]["code"] == "bad_request", frame
    c.send_raw('{"id":3,"op":5}')
    assert (await asyncio.wait_for(c.errors.get(), 5)) == {
        "id": 3,
        "error": {"code": "bad_request", "message": "`op` must be a string"},
    }
    await c.ok("ping")  # still open


async def test_malformed_flood_closes_4008(ws_connect: Connect) -> None:
    c = await ws_connect()
    for _ in range(21):
        c.send_raw("garbage")
    push = await c.push_of("disconnect")
    assert push["code"] == 4008 and push["reconnect"] is False
    assert await c.closed() == 4008


async def test_command_rate_closes_4008(app: RunningServer, ws_connect: Connect) -> None:
    c = await ws_connect()
    burst = app.node.config.limits.command_burst
    for i in range(burst + 50):
        c.send_raw(orjson.dumps({"id": i + 100, "op": "ping"}).decode())
    push = await c.push_of("disconnect", timeout=10)
    assert push["code"] == 4008
    assert await c.closed() == 4008


async def test_oversized_frame_closes_1009(app: RunningServer, ws_connect: Connect) -> None:
    c = await ws_connect()
    c.send_raw("x" * (app.node.config.server.max_message_bytes + 1))
    assert await c.closed() == 1009


async def test_frame_at_the_limit_is_handled(app: RunningServer, ws_connect: Connect) -> None:
    c = await ws_connect()
    limit = app.node.config.server.max_message_bytes
    frame = orjson.dumps({"id": 1, "op": "ping", "pad": ""})
    frame = frame[:-2] + b"x" * (limit - len(frame)) + b'"}'
    assert len(frame) == limit
    c.send_raw(frame.decode())
    reply = await asyncio.wait_for(c.errors.get(), 5)  # raw frames' replies land here
    assert reply == {"id": 1, "ok": True, "result": {}}


async def test_publication_too_large(app: RunningServer, ws_connect: Connect) -> None:
    c = await ws_connect()
    data = "y" * (app.node.config.server.max_message_bytes - 60)
    r = await c.call("publish", channel="room", data=data)
    assert r["error"]["code"] == "limit_exceeded"


async def test_origin_refused_403(app: RunningServer) -> None:
    req = tornado.httpclient.HTTPRequest(app.ws_url, headers={"Origin": "https://evil.example"})
    with pytest.raises(tornado.httpclient.HTTPClientError) as exc:
        await tornado.websocket.websocket_connect(req)
    assert exc.value.code == 403


async def test_same_origin_allowed(app: RunningServer) -> None:
    c = await ws_open(app.ws_url, {"Origin": app.base_url})
    assert c.hello["push"] == "hello"
    await c.close()


async def test_token_in_query(app: RunningServer, ws_connect: Connect) -> None:
    c = await ws_connect(f"?token={token('42', name='Ada')}")
    assert c.hello["user"] == "42"
    assert (await c.ok("subscribe", channel="user#42"))["offset"] == 0
    r = await c.call("subscribe", channel="user#43")
    assert r["error"]["code"] == "forbidden"
    assert (await c.ok("subscribe", channel="chat:dm#41,42"))["offset"] == 0
    assert (await c.ok("publish", channel="chat:lobby", data="hi"))["offset"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        jwt.encode(
            {"sub": "1", "exp": int(time.time()) + 60},
            "wrong-secret-0123456789-abcdefghijklmnop",
            algorithm="HS256",
        ),
        jwt.encode({"sub": "1", "exp": int(time.time()) - 60}, TOKEN_SECRET, algorithm="HS256"),
        jwt.encode({"sub": "1"}, TOKEN_SECRET, algorithm="HS256"),
        jwt.encode({"sub": "1", "exp": int(time.time()) + 60}, "", algorithm="none"),
        jwt.encode({"sub": "1", "exp": int(time.time()) + 60}, TOKEN_SECRET * 2, algorithm="HS512"),
    ],
)
async def test_bad_token_in_query_refused_401(app: RunningServer, bad: str) -> None:
    req = tornado.httpclient.HTTPRequest(f"{app.ws_url}?token={bad}")
    with pytest.raises(tornado.httpclient.HTTPClientError) as exc:
        await tornado.websocket.websocket_connect(req)
    assert exc.value.code == 401


async def test_auth_command(ws_connect: Connect) -> None:
    c = await ws_connect()
    assert await c.ok("auth", token=token("9")) == {"user": "9"}
    assert (await c.ok("subscribe", channel="user#9"))["offset"] == 0
    assert (await c.call("auth", token=token("9")))["error"]["code"] == "bad_request"


async def test_auth_command_bad_token_closes_4001(ws_connect: Connect) -> None:
    c = await ws_connect()
    r = await c.call("auth", token="nonsense")
    assert r["error"]["code"] == "unauthorized"
    push = await c.push_of("disconnect")
    assert push["code"] == 4001 and push["reconnect"] is False
    assert await c.closed() == 4001


async def test_token_expiry_closes_4001(ws_connect: Connect) -> None:
    # Expired 8 s ago: inside the 10 s leeway now, past it 2 s later.
    t = jwt.encode({"sub": "5", "exp": int(time.time()) - 8}, TOKEN_SECRET, algorithm="HS256")
    c = await ws_connect(f"?token={t}")
    assert c.hello["user"] == "5"
    push = await c.push_of("disconnect", timeout=6)
    assert push["code"] == 4001 and "expired" in push["reason"]
    assert await c.closed() == 4001


async def test_token_channels_claim(ws_connect: Connect) -> None:
    c = await ws_connect(f"?token={token('1', channels=['user#77'])}")
    assert (await c.ok("subscribe", channel="user#77"))["offset"] == 0


async def test_disconnect_via_api(app: RunningServer, ws_connect: Connect) -> None:
    c = await ws_connect(f"?token={token('13')}")
    code, body = await http(app, "POST", "/api/disconnect", {"user": "13"})
    assert (code, body) == (200, {"disconnected": 1})
    push = await c.push_of("disconnect")
    assert push["code"] == 4001
    assert await c.closed() == 4001


async def test_max_connections_refused(
    app: RunningServer, ws_connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = app.node.config
    tight = cfg.replace(server=cfg.server.__class__(max_connections=1))
    monkeypatch.setattr(app.node, "config", tight)
    await ws_connect()
    with pytest.raises(tornado.httpclient.HTTPClientError) as exc:
        await tornado.websocket.websocket_connect(app.ws_url)
    assert exc.value.code == 503


async def test_integers_beyond_64_bits_refused_not_rounded(ws_connect: Connect) -> None:
    c = await ws_connect()
    await c.ok("subscribe", channel="nums")
    c.send_raw('{"id":1,"op":"publish","channel":"nums","data":123456789012345678901234567890}')
    err = await asyncio.wait_for(c.errors.get(), 5)
    assert err["id"] == 1 and err["error"]["code"] == "bad_request"
    assert "64 bits" in err["error"]["message"]
    edge = 2**64 - 1
    c.send_raw(f'{{"id":2,"op":"publish","channel":"nums","data":[{edge},"{"9" * 30}"]}}')
    assert (await asyncio.wait_for(c.errors.get(), 5))["ok"] is True
    assert (await c.push_of("pub"))["data"] == [edge, "9" * 30]
