"""The Python client against a real server: commands, subscriptions, errors, the HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest

from server import auth
from switchboard_client import Client, JoinLeave, Publication, ServerAPI, SwitchboardError
from switchboard_client.backoff import Backoff, drain_delay
from switchboard_client.client import with_token
from tests.py_client_support import Seen, eventually
from tests.support import API_KEY, TOKEN_SECRET, RunningServer, make_config, start_server


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("enc_a", "enc_b"), [("json", "json"), ("msgpack", "json"), ("json", "msgpack")]
)
async def test_subscribe_publish_history_presence(
    app: RunningServer, enc_a: Literal["json", "msgpack"], enc_b: Literal["json", "msgpack"]
) -> None:
    """Either client in either encoding: the same values arrive."""
    async with Client(app.ws_url, encoding=enc_a) as a, Client(app.ws_url, encoding=enc_b) as b:
        assert a._conn is not None and a._conn.encoding == enc_a
        seen = Seen(a)
        joins: list[JoinLeave] = []
        sub = await a.subscribe("lobby", on_publication=seen.publication, on_join=joins.append)
        assert a.state == "connected" and a.hello is not None and a.hello["user"] is None
        acks = [await b.publish("lobby", {"n": n}) for n in range(3)]
        assert [ack["offset"] for ack in acks] == [1, 2, 3]
        await eventually(lambda: len(seen.data("lobby")) == 3)
        assert seen.data("lobby") == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert sub.position == {"offset": 3, "epoch": acks[0]["epoch"]}

        page = await b.history("lobby", limit=2)
        assert [p["data"] for p in page["publications"]] == [{"n": 0}, {"n": 1}]
        assert page["offset"] == 3
        page = await b.history("lobby", since=1, reverse=True)
        assert [p["offset"] for p in page["publications"]] == [3, 2]

        await b.subscribe("lobby", on_publication=lambda pub: None)
        await eventually(lambda: len(joins) == 1)
        assert b.hello is not None and joins[0]["client"] == b.hello["client"]
        who = await a.presence("lobby")
        assert set(who["clients"]) == {a.hello["client"], b.hello["client"]}

        await sub.unsubscribe()
        await b.publish("lobby", "after")
        assert (await b.history("lobby", since=3))["publications"][0]["data"] == "after"
        await asyncio.sleep(0.1)
        assert len(seen.data("lobby")) == 3  # nothing after unsubscribe
        assert a.subscription("lobby") is None


@pytest.mark.asyncio
async def test_a_subscription_is_an_async_iterator(app: RunningServer) -> None:
    async with Client(app.ws_url) as sb:
        first = await sb.publish("news", "before")
        sub = await sb.subscribe("news", since={"offset": 0, "epoch": first["epoch"]})
        for n in range(3):
            await sb.publish("news", n)
        got: list[Publication] = []
        async for pub in sub:
            got.append(pub)
            if len(got) == 4:
                await sub.unsubscribe()
        assert [p["data"] for p in got] == ["before", 0, 1, 2]
        assert [p["offset"] for p in got] == [1, 2, 3, 4]
        assert sub.recovered is True


@pytest.mark.asyncio
async def test_a_reader_that_falls_behind_catches_up_from_history(app: RunningServer) -> None:
    """A full queue is neither unbounded nor silently lossy: the subscription restarts `since`."""
    async with Client(app.ws_url) as sb:
        seen = Seen(sb)
        sub = await sb.subscribe("news", max_queue=4)
        for n in range(10):
            await sb.publish("news", n)
        await asyncio.sleep(0.1)  # all ten arrived; four were queued
        got = []
        async for pub in sub:
            got.append(pub["data"])
            if len(got) == 10:
                break
        assert got == list(range(10))
        assert seen.recoveries and all(r["recovered"] for r in seen.recoveries)


@pytest.mark.asyncio
async def test_refusals_raise_switchboard_errors(app: RunningServer) -> None:
    async with Client(app.ws_url) as sb:
        cases: list[tuple[Any, str]] = [
            (sb.subscribe("chat:room"), "unauthorized"),  # chat: anonymous = false
            (sb.subscribe("bad channel"), "bad_request"),
            (sb.subscribe("nons:x"), "not_found"),
            (sb.publish("feed:x", 1), "forbidden"),  # feed: publish = "server"
            (sb.presence("quiet:x"), "disabled"),
            (sb.history("lobby", limit=5000), "bad_request"),
        ]
        for call, code in cases:
            with pytest.raises(SwitchboardError) as caught:
                await call
            assert caught.value.code == code, caught.value
            assert caught.value.message
        assert sb.subscription("chat:room") is None
        await sb.subscribe("lobby")
        with pytest.raises(SwitchboardError, match="already subscribed"):
            await sb.subscribe("lobby")
        assert sb.state == "connected"  # refusals never cost the connection


@pytest.mark.asyncio
async def test_a_refused_token_stops_the_client(app: RunningServer) -> None:
    expired = auth.mint_token(TOKEN_SECRET, "u1", -60)
    client = Client(app.ws_url, token=expired)
    with pytest.raises(SwitchboardError) as caught:
        await client.connect()
    assert caught.value.code == "unauthorized" and caught.value.status == 401
    assert client.state == "disconnected"
    with pytest.raises(SwitchboardError):
        await client.subscribe("lobby")


@pytest.mark.asyncio
async def test_server_api(app: RunningServer) -> None:
    api = ServerAPI(app.base_url, API_KEY)
    token = await api.tokens("42", name="Ada", ttl_s=600)
    async with Client(app.ws_url, token=token) as sb:
        seen = Seen(sb)
        assert sb.hello is not None and sb.hello["user"] == "42"
        await sb.subscribe("feed:news", on_publication=seen.publication)
        ack = await api.publish("feed:news", {"title": "one"})
        assert ack["offset"] == 1
        results = await api.broadcast(["feed:news", "bad channel", "lobby"], "two")
        assert results[0]["offset"] == 2 and results[2]["offset"] == 1
        assert results[1]["error"]["code"] == "bad_request"
        await eventually(lambda: seen.data("feed:news") == [{"title": "one"}, "two"])

        await api.publish("lobby", "three")
        page = await api.history("lobby", since=1, limit=10)
        assert [p["data"] for p in page["publications"]] == ["three"]
        page = await api.history("lobby", reverse=True)
        assert [p["data"] for p in page["publications"]] == ["three", "two"]
        await sb.subscribe("lobby", on_publication=seen.publication)
        who = await api.presence("lobby")
        assert [c["user"] for c in who["clients"].values()] == ["42"]
        stats = await api.stats()
        assert stats["total"]["connections"] >= 1

        assert await api.disconnect("42") == 1  # 4001: the same credentials cannot come back
        await eventually(lambda: sb.state == "disconnected")
        assert seen.errors[-1].code == "unauthorized" and seen.errors[-1].close_code == 4001
        assert seen.count("reconnecting") == 0

    with pytest.raises(SwitchboardError) as caught:
        await ServerAPI(app.base_url, "wrong-key-wrong-key").stats()
    assert caught.value.code == "unauthorized" and caught.value.status == 401
    with pytest.raises(SwitchboardError) as caught:
        await api.publish("bad channel", 1)
    assert caught.value.code == "bad_request" and caught.value.status == 400
    with pytest.raises(SwitchboardError) as caught:
        await api.tokens("")
    assert caught.value.code == "bad_request"


@pytest.mark.asyncio
async def test_server_api_unreachable() -> None:
    with pytest.raises(SwitchboardError) as caught:
        await ServerAPI("http://127.0.0.1:9", API_KEY, timeout=2).stats()
    assert caught.value.code == "unavailable"


@pytest.mark.asyncio
@pytest.mark.parametrize("peer", ["hangs_up", "never_answers"])
async def test_server_api_without_a_response_is_unavailable(peer: str) -> None:
    """A request that gets no response (the process died mid-request, or stalls past the
    timeout) is a SwitchboardError like any other failure, not Tornado's own exception."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if peer == "never_answers":
            await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SwitchboardError) as caught:
            await ServerAPI(f"http://127.0.0.1:{port}", API_KEY, timeout=0.5).stats()
        assert caught.value.code == "unavailable" and caught.value.status is None
    finally:
        server.close()


def test_backoff_windows_double_to_the_cap_with_full_jitter() -> None:
    backoff = Backoff(0.5, 20.0)
    windows = [0.5, 1, 2, 4, 8, 16, 20, 20, 20]
    for window in windows:
        delays = [Backoff(0.5, 20.0) for _ in range(200)]
        for b in delays:
            b.attempt = backoff.attempt
        samples = [b.next() for b in delays]
        assert all(0 <= s <= window for s in samples)
        assert max(samples) > window * 0.8 and min(samples) < window * 0.2  # full, not equal
        backoff.next()
    backoff.reset()
    assert backoff.attempt == 0
    samples = [drain_delay(1000) for _ in range(200)]
    assert all(1.0 <= s <= 1.5 for s in samples) and max(samples) > 1.4


def test_token_goes_in_the_query() -> None:
    assert with_token("http://h:1/ws?v=1&token=old", "new") == "ws://h:1/ws?v=1&token=new"
    assert with_token("wss://h/ws", None) == "wss://h/ws"


@pytest.mark.asyncio
async def test_the_disconnect_push_decides_over_the_close_code() -> None:
    """Over its command rate a client is closed with 4008, yet told to reconnect: it does."""
    app = await start_server(make_config(limits={"command_rate": 1, "command_burst": 5}))
    try:
        async with Client(app.ws_url, min_delay=0.05, max_delay=0.2) as sb:
            seen = Seen(sb)
            await sb.subscribe("lobby", on_publication=seen.publication)
            replies = await asyncio.gather(
                *(sb.publish("lobby", n) for n in range(10)), return_exceptions=True
            )
            refused = [r for r in replies if isinstance(r, SwitchboardError)]
            assert {r.code for r in refused} <= {"limit_exceeded", "unavailable"}
            assert any(r.code == "limit_exceeded" for r in refused), replies
            await eventually(lambda: seen.count("reconnecting") > 0)
            await eventually(lambda: sb.state == "connected", timeout=5)
            await asyncio.sleep(1.0)  # the bucket refills
            await sb.publish("lobby", "after")
            await eventually(lambda: "after" in seen.data("lobby"))
            assert not seen.errors
    finally:
        await app.stop()
