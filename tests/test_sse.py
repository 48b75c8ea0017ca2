"""The SSE transport against a real server: protocol v1 frames as events, commands in POSTs,
resumption with Last-Event-ID without loss, the grace period, the same limits as a WebSocket,
origin checks and commands posted to another process of the same Redis."""

from __future__ import annotations

import asyncio
import doctest
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import pytest_asyncio
import tornado.httpclient
import tornado.web

from server import auth
from server.config import Config
from server.sse import events
from server.sse.registry import Sessions
from tests.sse_support import EventStream, SseClient
from tests.support import TOKEN_SECRET, RunningServer, http, make_config, start_server

pytestmark = pytest.mark.asyncio


def sessions_of(app: RunningServer) -> Sessions:
    application = app.server.request_callback
    assert isinstance(application, tornado.web.Application)
    for rule in application.wildcard_router.rules:
        found = (getattr(rule, "target_kwargs", None) or {}).get("sessions")
        if isinstance(found, Sessions):
            return found
    raise AssertionError("no /sse route")


@pytest_asyncio.fixture
async def sse(app: RunningServer) -> AsyncIterator[Callable[..., Awaitable[SseClient]]]:
    opened: list[SseClient] = []

    async def connect(query: str = "", headers: dict[str, str] | None = None) -> SseClient:
        client = SseClient(app.port)
        await client.connect(query, headers)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        await client.close()
    await settle(app)


async def settle(app: RunningServer) -> None:
    """End every connection and let its clean-up run before the server stops (a WebSocket's
    closing handshake gives it that time; an SSE session's end is immediate)."""
    for conn in list(app.node.hub.clients()):
        conn.disconnect(1001, "test over", True)  # type: ignore[attr-defined]
    await asyncio.sleep(0.05)


async def publish(app: RunningServer, channel: str, data: object) -> int:
    status, body = await http(app, "POST", "/api/publish", {"channel": channel, "data": data})
    assert status == 200, body
    return int(body["offset"])


async def test_frames_arrive_as_events_and_commands_go_in_posts(
    sse: Callable[..., Awaitable[SseClient]],
    app: RunningServer,
    ws_connect: Callable[..., Awaitable[object]],
) -> None:
    client = await sse()
    assert client.session.startswith(sessions_of(app).tag + ".")
    assert client.last_id == f"{client.session}:1"  # the hello is frame 1
    assert client.hello["version"] == 1 and client.hello["user"] is None
    assert (await client.ok("subscribe", channel="room"))["offset"] == 0
    await publish(app, "room", {"text": "hi"})
    pub = await client.push("pub")
    assert pub["data"] == {"text": "hi"} and pub["offset"] == 1
    ack = await client.ok("publish", channel="room", data=[1, 2])
    assert ack["offset"] == 2
    assert (await client.push("pub"))["data"] == [1, 2]
    who = await client.ok("presence", channel="room")
    assert list(who["clients"]) == [client.hello["client"]]
    # A WebSocket client of the same channel sees the SSE client's publications and joins.
    ws = await ws_connect()
    await ws.ok("subscribe", channel="room")  # type: ignore[attr-defined]
    assert (await client.push("join"))["client"] == ws.hello["client"]  # type: ignore[attr-defined]
    # Several commands in one POST run in order, each answered.
    first = client.next_id
    frames = [
        orjson.dumps({"id": first + i, "op": op, "channel": "room"})
        for i, op in enumerate(["history", "unsubscribe", "ping"])
    ]
    client.next_id += 3
    assert await client.post(*frames) == 202
    replies: list[dict[str, Any]] = []
    while len(replies) < 3:
        msg = await client.recv()
        if "id" in msg:
            replies.append(msg)
    assert [r["id"] for r in replies] == [first, first + 1, first + 2]
    assert len(replies[0]["result"]["publications"]) == 2
    assert replies[1]["result"] == replies[2]["result"] == {}


async def test_a_dropped_stream_resumes_without_losing_or_doubling_a_frame(
    sse: Callable[..., Awaitable[SseClient]], app: RunningServer
) -> None:
    client = await sse()
    await client.ok("subscribe", channel="room")
    await publish(app, "room", 1)
    assert (await client.push("pub"))["offset"] == 1
    before = client.last_id
    assert client.stream is not None
    client.stream.drop()
    await asyncio.sleep(0.1)
    for n in (2, 3, 4):
        await publish(app, "room", n)
    # Commands posted while no stream is attached are answered on the next one.
    assert await client.send("ping") == 202
    stream = await client.resume()
    assert stream.status == 200 and stream.headers["content-type"] == "text/event-stream"
    got = [await client.recv() for _ in range(4)]
    assert [m.get("offset") for m in got[:3]] == [2, 3, 4]
    assert got[3].get("result") == {}
    await publish(app, "room", 5)
    assert (await client.push("pub"))["offset"] == 5
    # An older Last-Event-ID replays from there, as the standard says, with the same ids.
    replay = await client.resume(before)
    again = [await client.recv() for _ in range(5)]
    assert [m.get("offset") for m in again] == [2, 3, 4, None, 5]
    assert replay.status == 200
    # The replaced stream was ended by the server.
    replaced = client.streams[1]
    while (event := await replaced.next()) is not None:
        assert event.kind == "message"
    assert app.node.hub.client_count == 1


async def test_the_session_ends_after_its_grace_period(
    sse: Callable[..., Awaitable[SseClient]], app: RunningServer
) -> None:
    sessions = sessions_of(app)
    sessions.grace_s = 0.3
    client = await sse()
    await client.ok("subscribe", channel="room")
    assert client.stream is not None
    client.stream.drop()
    deadline = time.monotonic() + 5
    while app.node.hub.client_count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert app.node.hub.client_count == 0 and len(sessions) == 0
    status, who = await http(app, "GET", "/api/channels/room/presence")
    assert status == 200 and who["clients"] == {}
    stream = await client.resume()
    assert stream.status == 204  # EventSource stops; the client starts a new session
    assert await client.send("ping") == 404


async def test_frames_pushed_out_of_the_buffer_unsent_end_the_session_4009(
    app: RunningServer,
) -> None:
    sessions = sessions_of(app)
    client = SseClient(app.port)
    await client.connect()
    await client.ok("subscribe", channel="room")
    assert client.stream is not None
    client.stream.drop()
    await asyncio.sleep(0.1)
    limit = app.node.config.server.max_pending_bytes
    big = "x" * 60_000
    for _ in range(limit // 60_000 + 2):
        await publish(app, "room", big)
    deadline = time.monotonic() + 5
    while app.node.hub.client_count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert app.node.hub.client_count == 0 and len(sessions) == 0
    assert (await client.resume()).status == 204
    await client.close()
    await settle(app)


async def test_a_resume_from_before_the_buffer_gets_a_close_event(
    sse: Callable[..., Awaitable[SseClient]], app: RunningServer
) -> None:
    client = await sse()
    await client.ok("subscribe", channel="room")
    limit = app.node.config.server.max_pending_bytes
    for _ in range(limit // 60_000 + 2):
        await publish(app, "room", "y" * 60_000)
        await client.push("pub")
    await client.resume(f"{client.session}:1")
    assert await client.push("closed") == {"closed": {"code": 4009, "reason": "client too slow"}}
    assert app.node.hub.client_count == 0


async def test_posted_publishes_are_pipelined_with_replies_in_order(
    sse: Callable[..., Awaitable[SseClient]],
) -> None:
    """A session's publishes run alongside each other, as a WebSocket's (server/replies.py);
    every reply keeps its command's place, the history after them sees them all."""
    client = await sse()
    await client.ok("subscribe", channel="piped")
    first = client.next_id
    frames = [
        orjson.dumps({"id": first + i, "op": "publish", "channel": "piped", "data": i})
        for i in range(50)
    ]
    frames.append(orjson.dumps({"id": first + 50, "op": "history", "channel": "piped"}))
    client.next_id += 51
    assert await client.post(*frames) == 202
    replies: list[dict[str, Any]] = []
    pubs: list[dict[str, Any]] = []
    while len(replies) < 51 or len(pubs) < 50:
        msg = await client.recv()
        (replies if "id" in msg else pubs).append(msg)
    assert [r["id"] for r in replies] == list(range(first, first + 51))
    offsets = [r["result"]["offset"] for r in replies[:50]]
    assert offsets == list(range(offsets[0], offsets[0] + 50))
    assert [p["data"] for p in pubs] == list(range(50))
    history = replies[50]["result"]["publications"]
    assert [p["offset"] for p in history] == offsets


@pytest.mark.parametrize("config", [make_config(limits={"command_burst": 3, "command_rate": 0.01})])
async def test_limits_are_those_of_a_websocket(
    config: Config, sse: Callable[..., Awaitable[SseClient]], app: RunningServer
) -> None:
    client = await sse()
    assert await client.post(b"not json") == 202
    assert (await client.recv())["error"]["code"] == "bad_request"
    pings = [orjson.dumps({"id": n, "op": "ping"}) for n in range(1, 6)]
    assert await client.post(*pings) == 202
    replies = [await client.recv() for _ in range(6)]
    assert [r.get("result") for r in replies[:3]] == [{}, {}, {}]
    assert replies[3]["error"]["code"] == "limit_exceeded" and replies[3]["id"] == 4
    assert replies[4]["push"] == "disconnect" and replies[4]["code"] == 4008
    assert replies[5] == {"closed": {"code": 4008, "reason": "command rate exceeded"}}
    assert await client.recv() == {"ended": True}
    assert await client.send("ping") == 404


async def test_posts_are_checked(
    sse: Callable[..., Awaitable[SseClient]], app: RunningServer
) -> None:
    client = await sse()
    assert await client.post(b'{"id":1,"op":"ping"}', headers={"Switchboard-Session": ""}) == 400
    assert await client.post(b"\xff\xfe") == 400
    assert await client.post(b"\n \n") == 400
    too_big = orjson.dumps({"id": 1, "op": "publish", "channel": "room", "data": "z" * 70_000})
    assert await client.post(too_big) == 413
    gone = SseClient(app.port)
    gone.session = sessions_of(app).tag + ".no-such-session"
    assert await gone.send("ping") == 404
    evil = {"Origin": "http://evil.example"}
    assert await client.post(b'{"id":1,"op":"ping"}', headers=evil) == 403
    same = {"Origin": f"http://127.0.0.1:{app.port}"}
    assert await client.post(b'{"id":1,"op":"ping"}', headers=same) == 202
    assert (await client.recv())["result"] == {}


async def test_origins_follow_the_websocket_rule(app: RunningServer) -> None:
    refused = await EventStream.open(app.port, headers={"Origin": "http://evil.example"})
    assert refused.status == 403
    assert orjson.loads(await refused.body())["error"]["code"] == "forbidden"
    refused.drop()
    same = await EventStream.open(app.port, headers={"Origin": f"http://127.0.0.1:{app.port}"})
    assert same.status == 200 and "access-control-allow-origin" not in same.headers
    await same.close()


@pytest.mark.parametrize(
    "config", [make_config(security={"allowed_origins": ["http://app.example"]})]
)
async def test_allowed_origins_get_cors_with_credentials(
    config: Config, app: RunningServer
) -> None:
    stream = await EventStream.open(app.port, headers={"Origin": "http://app.example"})
    assert stream.status == 200
    assert stream.headers["access-control-allow-origin"] == "http://app.example"
    assert stream.headers["access-control-allow-credentials"] == "true"
    await stream.close()
    req = tornado.httpclient.HTTPRequest(
        f"http://127.0.0.1:{app.port}/sse",
        method="OPTIONS",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
    )
    resp = await tornado.httpclient.AsyncHTTPClient().fetch(req, raise_error=False)
    assert resp.code == 204
    assert "Switchboard-Session" in resp.headers["Access-Control-Allow-Headers"]
    assert resp.headers["Access-Control-Allow-Origin"] == "http://app.example"


async def test_tokens_authenticate_the_stream(
    sse: Callable[..., Awaitable[SseClient]], app: RunningServer
) -> None:
    token = auth.mint_token(TOKEN_SECRET, "u42", 600, name="Ada")
    client = await sse(f"?token={token}")
    assert client.hello["user"] == "u42"
    assert (await client.ok("subscribe", channel="chat:room"))["offset"] == 0
    bad = await EventStream.open(app.port, "?token=nope")
    assert bad.status == 401
    assert orjson.loads(await bad.body())["error"]["code"] == "unauthorized"
    bad.drop()


async def test_keepalive_comments_keep_a_quiet_session() -> None:
    config = make_config(server={"ping_interval_s": 0.2})
    app = await start_server(config)
    try:
        client = SseClient(app.port)
        await client.connect()
        await asyncio.sleep(3.5)  # keep-alive rounds (a tick a second) without a command
        assert client.stream is not None and client.stream.comments >= 2
        assert app.node.hub.client_count == 1
        assert await client.ok("ping") == {}
        await client.close()
    finally:
        await settle(app)
        await app.stop()


async def test_commands_posted_to_another_process_reach_the_session(
    redis_url: str, redis_prefix: str
) -> None:
    config = make_config(redis={"url": redis_url, "prefix": redis_prefix})
    a, b = await start_server(config), await start_server(config)
    try:
        client = SseClient(a.port, post_port=b.port)
        await client.connect()
        assert (await client.ok("subscribe", channel="room"))["offset"] == 0
        ack = await client.ok("publish", channel="room", data="across")
        assert (await client.push("pub"))["offset"] == ack["offset"]
        assert a.node.hub.client_count == 1 and b.node.hub.client_count == 0
        # A session that ended is not found anywhere: the POST is accepted by the other
        # process (it cannot know), and nothing answers.
        await client.close()
    finally:
        await settle(a)
        await a.stop()
        await b.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_doctests() -> None:
    result = doctest.testmod(events)
    assert result.failed == 0 and result.attempted > 0
