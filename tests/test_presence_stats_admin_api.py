"""presence_stats (op and HTTP API), the channel directory, and ending a user's subscription
through the HTTP API, in one process."""

from __future__ import annotations

import pytest

from server import auth
from tests.support import TOKEN_SECRET, RunningServer, WsClient, http, ws_open


async def as_user(app: RunningServer, user: str) -> WsClient:
    return await ws_open(f"{app.ws_url}?token={auth.mint_token(TOKEN_SECRET, user, 60, user)}")


@pytest.mark.asyncio
async def test_presence_stats_counts_clients_and_distinct_users(app: RunningServer) -> None:
    tab1, tab2, anon = (
        await as_user(app, "ada"),
        await as_user(app, "ada"),
        await ws_open(app.ws_url),
    )
    try:
        for c in (tab1, tab2, anon):
            await c.ok("subscribe", channel="room")
        assert await anon.ok("presence_stats", channel="room") == {"clients": 3, "users": 1}
        code, body = await http(app, "GET", "/api/channels/room/presence_stats")
        assert (code, body) == (200, {"clients": 3, "users": 1})
        reply = await anon.call("presence_stats", channel="feed:x")
        assert reply["error"]["code"] == "disabled"
        reply = await anon.call("presence_stats", channel="chat:x")
        assert reply["error"]["code"] == "unauthorized"
        code, body = await http(app, "GET", "/api/channels/room/presence_stats", key=None)
        assert code == 401
    finally:
        for c in (tab1, tab2, anon):
            await c.close()


@pytest.mark.asyncio
async def test_channels_are_listed_and_a_user_can_be_unsubscribed(app: RunningServer) -> None:
    ada, bob = await as_user(app, "ada"), await as_user(app, "bob")
    try:
        await ada.ok("subscribe", channel="room")
        await bob.ok("subscribe", channel="room")
        await bob.ok("subscribe", channel="other")
        code, body = await http(app, "GET", "/api/channels?q=ROO")
        assert code == 200
        assert body["channels"] == [{"channel": "room", "subscribers": 2, "processes": 1}]
        code, body = await http(app, "GET", "/api/channels?limit=0")
        assert code == 400

        code, body = await http(app, "POST", "/api/unsubscribe", {"user": "bob", "channel": "room"})
        assert (code, body) == (200, {"unsubscribed": 1})
        push = await bob.push_of("unsubscribed")
        assert (push["channel"], push["reason"]) == ("room", "server")
        assert await ada.ok("presence_stats", channel="room") == {"clients": 1, "users": 1}
        await bob.ok("publish", channel="other", data="still subscribed there")
        assert (await bob.push_of("pub"))["data"] == "still subscribed there"
        code, body = await http(app, "POST", "/api/unsubscribe", {"user": "", "channel": "room"})
        assert code == 400
    finally:
        await ada.close()
        await bob.close()
