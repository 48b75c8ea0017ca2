"""The HTTP API: each endpoint with and without the key, and its errors."""

from __future__ import annotations

import pytest

from server.auth import verify_token
from tests.support import TOKEN_SECRET, http

pytestmark = pytest.mark.asyncio

GUARDED = [
    ("POST", "/api/publish"),
    ("POST", "/api/broadcast"),
    ("GET", "/api/channels/x/history"),
    ("GET", "/api/channels/x/presence"),
    ("POST", "/api/tokens"),
    ("POST", "/api/disconnect"),
    ("GET", "/api/stats"),
    ("GET", "/metrics"),
]


@pytest.mark.parametrize("method,path", GUARDED)
async def test_key_required(app, method, path):
    for key in (None, "wrong-key-wrong-key"):
        code, body = await http(app, method, path, {} if method == "POST" else None, key=key)
        assert code == 401 and body["error"]["code"] == "unauthorized", (key, body)


async def test_health_is_open(app):
    assert await http(app, "GET", "/healthz", key=None) == (
        200,
        {"status": "ok", "node": app.node.id},
    )
    code, body = await http(app, "GET", "/readyz", key=None)
    assert code == 200 and body == {"ready": True, "problems": {}}


async def test_publish_and_history(app, ws_connect):
    c = await ws_connect()
    await c.ok("subscribe", channel="feed:news")
    code, body = await http(app, "POST", "/api/publish", {"channel": "feed:news", "data": [1]})
    assert code == 200 and body["offset"] == 1 and isinstance(body["epoch"], str)
    pub = await c.push_of("pub")
    assert pub["data"] == [1] and "info" not in pub
    await http(app, "POST", "/api/publish", {"channel": "room", "data": "a"})
    await http(app, "POST", "/api/publish", {"channel": "room", "data": "b"})
    code, body = await http(app, "GET", "/api/channels/room/history?since=1&limit=5")
    assert code == 200 and [p["data"] for p in body["publications"]] == ["b"]
    assert body["offset"] == 2
    code, body = await http(app, "GET", "/api/channels/room/history?reverse=true")
    assert [p["data"] for p in body["publications"]] == ["b", "a"]


async def test_publish_errors(app):
    cases = [
        ({"channel": "bad channel", "data": 1}, 400, "bad_request"),
        ({"channel": "room"}, 400, "bad_request"),
        ({"channel": "nons:x", "data": 1}, 404, "not_found"),
    ]
    for body, status, code in cases:
        got_status, got = await http(app, "POST", "/api/publish", body)
        assert (got_status, got["error"]["code"]) == (status, code), body
    status, got = await http(app, "POST", "/api/publish", raw=b"{nope")
    assert status == 400 and "not valid JSON" in got["error"]["message"]
    status, got = await http(
        app, "POST", "/api/publish", raw=b'{"channel":"room","data":-99999999999999999999}'
    )
    assert status == 400 and "64 bits" in got["error"]["message"]
    status, got = await http(app, "POST", "/api/publish", raw=b"[]")
    assert status == 400 and got["error"]["code"] == "bad_request"
    status, got = await http(app, "GET", "/api/channels/quiet:x/history")
    assert status == 400 and got["error"]["code"] == "disabled"
    status, got = await http(app, "GET", "/api/channels/room/history?limit=abc")
    assert status == 400


async def test_broadcast(app):
    code, body = await http(
        app, "POST", "/api/broadcast", {"channels": ["a", "b", "nons:c", "a"], "data": {"x": 1}}
    )
    assert code == 200
    r = body["results"]
    assert r[0]["offset"] == 1 and r[1]["offset"] == 1 and r[3]["offset"] == 2
    assert r[2] == {"error": {"code": "not_found", "message": "unknown namespace 'nons'"}}
    code, body = await http(app, "POST", "/api/broadcast", {"channels": [], "data": 1})
    assert code == 400


async def test_presence(app, ws_connect):
    c = await ws_connect()
    await c.ok("subscribe", channel="room")
    code, body = await http(app, "GET", "/api/channels/room/presence")
    assert code == 200 and list(body["clients"]) == [c.hello["client"]]
    code, body = await http(app, "GET", "/api/channels/quiet:x/presence")
    assert code == 400 and body["error"]["code"] == "disabled"


async def test_tokens(app, ws_connect):
    code, body = await http(
        app,
        "POST",
        "/api/tokens",
        {"user": "42", "name": "Ada", "ttl_s": 60, "channels": ["user#9"]},
    )
    assert code == 200
    ident = verify_token(TOKEN_SECRET, body["token"])
    assert ident.user == "42" and ident.name == "Ada" and ident.channels == {"user#9"}
    c = await ws_connect(f"?token={body['token']}")
    assert c.hello["user"] == "42"
    for bad in (
        {},
        {"user": ""},
        {"user": "1", "ttl_s": 0},
        {"user": "1", "ttl_s": "x"},
        {"user": "1", "channels": "x"},
        {"user": "1", "info": []},
    ):
        code, body = await http(app, "POST", "/api/tokens", bad)
        assert code == 400, bad


async def test_disconnect_counts(app):
    code, body = await http(app, "POST", "/api/disconnect", {"user": "nobody"})
    assert (code, body) == (200, {"disconnected": 0})
    code, body = await http(app, "POST", "/api/disconnect", {})
    assert code == 400


async def test_stats_and_metrics(app, ws_connect):
    c = await ws_connect()
    await c.ok("subscribe", channel="room")
    await c.ok("publish", channel="room", data=1)
    code, body = await http(app, "GET", "/api/stats")
    assert code == 200
    proc = body["processes"][0]
    assert proc["connections"] == 1 and proc["subscriptions"] == 1 and proc["channels"] == 1
    assert proc["messages_in"] >= 2 and proc["messages_out"] >= 1 and proc["rss_bytes"] > 10**6
    assert body["total"]["connections"] == 1 and body["total"]["processes"] == 1
    code, text = await http(app, "GET", "/metrics")
    assert code == 200 and f'switchboard_connections{{node="{app.node.id}"}} 1.0' in text
    assert "switchboard_messages_in_total" in text


async def test_unknown_path_is_json_404(app):
    code, body = await http(app, "GET", "/api/nothing")
    assert code == 404


async def test_sizes_get_413_or_a_refused_body(app):
    limit = app.node.config.server.max_message_bytes
    code, body = await http(app, "POST", "/api/publish", {"channel": "room", "data": "x" * limit})
    assert code == 413 and body["error"]["code"] == "limit_exceeded"
    huge = b'{"channel":"room","data":"' + b"y" * (limit + 600 * 1024) + b'"}'
    code, _ = await http(app, "POST", "/api/publish", raw=huge)
    assert code in (400, 413)  # refused before the body is read whole
    code, body = await http(app, "GET", "/api/channels/room/history")
    assert code == 200 and body["publications"] == []  # nothing was published
