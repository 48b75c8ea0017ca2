"""The Python client rides out what a long-lived connection meets: a server restart, a drain,
an expiring token, a dead connection, a backing service that is down. Each against a real
server; each publication must arrive exactly once and in order, or the client must say not."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Literal

import pytest
import tornado.netutil
import tornado.testing

from server import auth
from server.app import build_node, make_app, make_server
from server.client import Connection
from switchboard_client import Client, ServerAPI, SwitchboardError
from tests.fixtures.mongo import drop_database, fresh_config
from tests.fixtures.server_processes import ServerProcess
from tests.py_client_support import Seen, drain, eventually
from tests.redis_server import RedisProcess
from tests.support import API_KEY, TOKEN_SECRET, RunningServer, make_config, start_server

MIN_S, MAX_S = 0.05, 0.3  # reconnect delays for tests


def server_side(app: RunningServer) -> list[Connection]:
    return list(app.node.hub.clients())  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_publications_made_while_the_server_was_down_arrive_once_in_order(
    mongo_url: str, encoding: Literal["json", "msgpack"]
) -> None:
    mongo = fresh_config(mongo_url)
    cfg = make_config(mongo={"url": mongo.url, "database": mongo.database})
    first = await start_server(cfg)
    second: RunningServer | None = None
    try:
        async with Client(first.ws_url, min_delay=MIN_S, max_delay=MAX_S, encoding=encoding) as sb:
            seen = Seen(sb)
            await sb.subscribe("news", on_publication=seen.publication)
            assert sb._conn is not None and sb._conn.encoding == encoding
            for n in range(3):
                await sb.publish("news", n)
            await eventually(lambda: len(seen.data("news")) == 3)
            await first.stop()
            await eventually(lambda: sb.state == "reconnecting", what="the client noticed")

            # The restarted server publishes (HTTP API, another port) before the client is back.
            node = build_node(cfg)
            await node.start()
            sock, api_port = tornado.testing.bind_unused_port()
            server = make_server(make_app(node), cfg)
            server.add_sockets([sock])
            second = RunningServer(node, first.port, server)
            api = ServerAPI(f"http://127.0.0.1:{api_port}", API_KEY)
            for n in range(3, 8):
                await api.publish("news", n)
            await asyncio.sleep(0.3)  # the client keeps knocking on a closed port meanwhile
            assert sb.state == "reconnecting" and seen.data("news") == [0, 1, 2]
            server.add_sockets(tornado.netutil.bind_sockets(first.port, "127.0.0.1"))

            await eventually(lambda: len(seen.data("news")) >= 8, what="recovery")
            await sb.publish("news", 8)
            await eventually(lambda: len(seen.data("news")) >= 9)
            await asyncio.sleep(0.1)
            assert seen.data("news") == list(range(9))
            # The restarted server goes on past every offset it may have handed out unstored.
            offsets = seen.offsets["news"]
            assert offsets[:3] == [1, 2, 3] and offsets[3] > 4
            assert offsets[3:] == list(range(offsets[3], offsets[3] + 6))
            assert seen.recoveries == [{"channel": "news", "recovered": True}]
            assert sb.subscription("news") is not None
    finally:
        if second is not None:
            await second.stop()
        await drop_database(mongo)


@pytest.mark.asyncio
async def test_a_drain_delays_the_reconnect_and_recovery_says_what_was_lost() -> None:
    """The graceful drain's push: wait reconnect_delay_ms plus up to half again, not backoff.

    A namespace whose history holds two publications (plus its unstored window of 64) cannot
    cover seventy missed ones: the client says `recovered: False` there, and stays gapless
    where history sufficed."""
    app = await start_server(
        make_config(namespaces={"short": {"history_size": 2, "history_ttl_s": 600}})
    )
    try:
        async with Client(app.ws_url, min_delay=MIN_S, max_delay=MAX_S) as sb:
            seen = Seen(sb)
            short_recoveries: list[bool] = []
            await sb.subscribe("news", on_publication=seen.publication)
            await sb.subscribe(
                "short:x",
                on_publication=seen.publication,
                on_recovery=lambda r: short_recoveries.append(r["recovered"]),
            )
            await sb.publish("news", "before")
            await sb.publish("short:x", "before")
            await eventually(lambda: len(seen.data("short:x")) == 1)

            (conn,) = server_side(app)
            drained_at = time.monotonic()
            drain(conn, 1000)
            await eventually(lambda: sb.state == "reconnecting")
            api = ServerAPI(app.base_url, API_KEY)
            for n in range(70):
                if n < 5:
                    await api.publish("news", n)
                await api.publish("short:x", n)
            await eventually(lambda: sb.state == "connected", what="the reconnect")
            back_after = time.monotonic() - drained_at

            retry = [r for _, s, r in seen.states if s == "reconnecting" and r]
            assert len(retry) == 1 and 1.0 <= retry[0] <= 1.5, seen.states
            assert 1.0 <= back_after < 3.0, back_after
            await eventually(lambda: len(seen.data("news")) == 6)
            await eventually(lambda: short_recoveries == [False])
            assert seen.data("news") == ["before", 0, 1, 2, 3, 4]
            assert seen.data("short:x") == ["before", *range(4, 70)]  # what history still held
            sub = sb.subscription("short:x")
            assert sub is not None and sub.recovered is False
            assert {"channel": "news", "recovered": True} in seen.recoveries
    finally:
        await app.stop()


@pytest.mark.asyncio
async def test_tokens_are_fetched_again_on_every_connect(app: RunningServer) -> None:
    """First token expired (refused at the upgrade), the second expires three seconds after
    the connect (the server closes with 4001), the third lasts: the subscription outlives them.
    Three seconds, not one: a loaded machine may take a second to connect."""
    tokens = [
        auth.mint_token(TOKEN_SECRET, "ada", -60),
        auth.mint_token(TOKEN_SECRET, "ada", -auth.LEEWAY_S + 3),
        auth.mint_token(TOKEN_SECRET, "ada", 3600),
    ]
    asked: list[str] = []

    async def get_token() -> str:
        asked.append(tokens[len(asked)])
        return asked[-1]

    async with Client(app.ws_url, get_token=get_token, min_delay=MIN_S, max_delay=MAX_S) as sb:
        seen = Seen(sb)
        assert len(asked) == 2 and sb.hello is not None and sb.hello["user"] == "ada"
        assert [e.code for e in seen.errors] == []  # the 401 came before Seen listened
        await sb.subscribe("chat:room", on_publication=seen.publication)  # needs a user
        await sb.publish("chat:room", "first")
        await eventually(lambda: len(asked) == 3, timeout=10, what="the token's expiry")
        await eventually(lambda: sb.state == "connected")
        await sb.publish("chat:room", "second")
        await eventually(lambda: len(seen.data("chat:room")) == 2)
        assert seen.data("chat:room") == ["first", "second"]
        assert seen.recoveries == [{"channel": "chat:room", "recovered": True}]
        assert seen.count("connected") == 1 and not seen.errors  # one reconnect


@pytest.mark.asyncio
async def test_a_refused_token_is_reported_and_replaced(app: RunningServer) -> None:
    tokens = [auth.mint_token(TOKEN_SECRET, "ada", -60), auth.mint_token(TOKEN_SECRET, "ada", 60)]
    sb = Client(
        app.ws_url,
        get_token=lambda: asyncio.sleep(0, tokens.pop(0)),
        min_delay=MIN_S,
        max_delay=MAX_S,
    )
    seen = Seen(sb)
    try:
        hello = await asyncio.wait_for(sb.connect(), 5)
        assert hello["user"] == "ada" and not tokens
        assert [(e.code, e.status) for e in seen.errors] == [("unauthorized", 401)]
    finally:
        await sb.close()


@pytest.mark.asyncio
async def test_an_unanswered_ping_means_a_dead_connection(
    server_processes: Callable[..., ServerProcess],
    redis_url: str,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frozen server (SIGSTOP) keeps its sockets open but answers nothing: the client must
    notice by its pings, keep trying, and come back when the server thaws."""
    monkeypatch.setenv("SWITCHBOARD_SERVER_PING_INTERVAL_S", "1")
    server = server_processes(redis_url, redis_prefix)
    server.wait_ready()
    async with Client(
        server.ws_url, ping_timeout=0.5, connect_timeout=1, min_delay=MIN_S, max_delay=MAX_S
    ) as sb:
        seen = Seen(sb)
        assert sb.hello is not None and sb.hello["ping_interval"] == 1
        await sb.subscribe("news", on_publication=seen.publication)
        await sb.publish("news", "before")
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            await eventually(lambda: sb.state == "reconnecting", timeout=5, what="dead ping")
            assert time.monotonic() - frozen_at < 3.0  # an interval, a ping timeout, slack
            await asyncio.sleep(1.5)  # attempts time out against the frozen server
            assert sb.state == "reconnecting"
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        await eventually(lambda: sb.state == "connected", timeout=10, what="the thaw")
        await sb.publish("news", "after")
        await eventually(lambda: len(seen.data("news")) == 2)
        assert seen.data("news") == ["before", "after"]


@pytest.mark.asyncio
async def test_a_subscribe_refused_as_unavailable_is_retried(
    own_redis: RedisProcess, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped: subscribes answer `unavailable`; the client retries them with backoff
    rather than give up, and the subscription it had is resumed gapless after the outage."""
    cfg = make_config(redis={"url": own_redis.url, "prefix": redis_prefix})
    app = await start_server(cfg)
    try:
        async with Client(app.ws_url, min_delay=MIN_S, max_delay=MAX_S) as sb:
            seen = Seen(sb)
            await sb.subscribe("news", on_publication=seen.publication)
            await sb.publish("news", 0)
            own_redis.stop()
            with caplog.at_level(logging.DEBUG, logger="switchboard_client"):
                pending = asyncio.ensure_future(sb.subscribe("other", seen.publication))
                await eventually(lambda: "subscribe to other: unavailable" in caplog.text)
                await asyncio.sleep(1.0)
                assert not pending.done()  # refused, retried, not given up
                own_redis.start()
                await asyncio.wait_for(pending, 30)
            assert sb.state == "connected"
            for channel in ("news", "other"):
                await api_publish_when_up(ServerAPI(app.base_url, API_KEY), channel, 1)
            await eventually(lambda: len(seen.data("news")) == 2 and seen.data("other") == [1])
            assert seen.data("news") == [0, 1]
            # The server brought the old subscription up to date itself after Redis came back.
            assert all(r["recovered"] for r in seen.recoveries), seen.recoveries
    finally:
        await app.stop()


async def api_publish_when_up(api: ServerAPI, channel: str, data: object) -> None:
    """Publish, retrying while the server still answers `unavailable` (its broker reconnects)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            await api.publish(channel, data)
            return
        except SwitchboardError as exc:
            assert exc.code == "unavailable" and time.monotonic() < deadline, exc
            await asyncio.sleep(0.1)
