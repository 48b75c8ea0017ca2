"""server/ws/listener.py: plain upgrades answered without Tornado's handler, the rest by Tornado.

Which path served an upgrade shows in its 101: Tornado's carries `Server` and `Date` headers,
the listener's only what RFC 6455 asks for. Either way the connection that follows is the same
WebSocket, and Tornado keeps nothing of it.
"""

from __future__ import annotations

import asyncio
import base64
import doctest
import gc
import os
import socket
from collections.abc import AsyncIterator

import orjson
import ormsgpack
import pytest
import pytest_asyncio
import tornado.iostream
import tornado.web

from handlers.ws import WebSocketHandler
from server.auth import mint_token
from server.ws import handshake, listener
from tests.support import TOKEN_SECRET, RunningServer, make_config, start_server
from tests.ws_support import ServerFrames, close_frame, frame, send

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(make_config(server={"max_connections": 5}))
    yield running
    await running.stop()


def head(port: int, query: str = "", **extra: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET /ws{query} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k.replace('_', '-')}: {v}" for k, v in extra.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def upgrade(
    port: int, data: bytes, split: bool = False
) -> tuple[socket.socket, bytes, ServerFrames]:
    """Send an upgrade request (in two writes 50 ms apart when `split`); the response head."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    if split:
        await send(sock, data[:20])
        await asyncio.sleep(0.05)
        data = data[20:]
    await send(sock, data)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 5)
        if not chunk:
            break
        got += chunk
    if b" 101 " in got.split(b"\r\n")[0]:
        return sock, got, ServerFrames(sock)
    length = next(
        int(line.split(b":")[1])
        for line in got.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(got.partition(b"\r\n\r\n")[2]) < length:
        got += await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    return sock, got, ServerFrames(sock)


def tornados(response: bytes) -> bool:
    return b"\r\nServer: TornadoServer" in response


async def ping(frames: ServerFrames, sock: socket.socket) -> None:
    await send(sock, frame(0x1, orjson.dumps({"id": 9, "op": "ping"})))
    assert await frames.json() == {"id": 9, "ok": True, "result": {}}


async def test_a_plain_upgrade_is_answered_by_the_listener(server: RunningServer) -> None:
    sock, response, frames = await upgrade(server.port, head(server.port))
    assert response.startswith(b"HTTP/1.1 101 ") and not tornados(response)
    hello = await frames.json()
    assert hello["push"] == "hello" and hello["user"] is None
    await ping(frames, sock)
    await send(sock, close_frame(1000))
    assert await frames.close() == b"\x03\xe8"
    sock.close()


async def test_a_token_signs_the_listeners_connection_in(server: RunningServer) -> None:
    token = mint_token(TOKEN_SECRET, "ada", 60, name="Ada")
    sock, response, frames = await upgrade(server.port, head(server.port, f"?token={token}"))
    assert not tornados(response)
    assert (await frames.json())["user"] == "ada"
    sock.close()


async def test_a_head_in_two_reads_goes_to_tornado_and_works_the_same(
    server: RunningServer,
) -> None:
    data = head(server.port) + frame(0x1, orjson.dumps({"id": 1, "op": "ping"}))
    sock, response, frames = await upgrade(server.port, data, split=True)
    assert response.startswith(b"HTTP/1.1 101 ") and tornados(response)
    assert (await frames.json())["push"] == "hello"
    assert await frames.json() == {"id": 1, "ok": True, "result": {}}  # sent with the head
    await ping(frames, sock)
    sock.close()


@pytest.mark.parametrize(
    "query, extra, status",
    [
        ("?token=not.a.jwt", {}, b"401"),
        ("?token=", {}, b"401"),
        ("", {"Origin": "http://elsewhere.example"}, b"403"),
        ("", {"Sec-Fetch-Site": "cross-site", "Origin": "http://elsewhere.example"}, b"403"),
    ],
)
async def test_refusals_are_tornados(
    server: RunningServer, query: str, extra: dict[str, str], status: bytes
) -> None:
    sock, response, _ = await upgrade(server.port, head(server.port, query, **extra))
    assert response.split(b"\r\n")[0].split(b" ")[1] == status, response[:200]
    assert tornados(response)
    sock.close()


async def test_an_unsupported_version_gets_426_from_tornado(server: RunningServer) -> None:
    data = head(server.port).replace(b"Version: 13", b"Version: 12")
    sock, response, _ = await upgrade(server.port, data)
    assert response.startswith(b"HTTP/1.1 426 ") and tornados(response)
    sock.close()


async def test_the_connection_limit_is_answered_by_tornado(server: RunningServer) -> None:
    held = [await upgrade(server.port, head(server.port)) for _ in range(5)]
    assert all(not tornados(r) for _, r, _ in held)
    sock, response, _ = await upgrade(server.port, head(server.port))
    assert response.startswith(b"HTTP/1.1 503 ") and tornados(response)
    for s, _, _ in held:
        s.close()
    sock.close()


async def test_other_query_parameters_go_to_tornado(server: RunningServer) -> None:
    sock, response, frames = await upgrade(server.port, head(server.port, "?format=json"))
    assert response.startswith(b"HTTP/1.1 101 ") and tornados(response)
    assert (await frames.json())["push"] == "hello"
    sock.close()


def chosen_subprotocol(response: bytes) -> str | None:
    for line in response.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"sec-websocket-protocol":
            return value.strip().decode()
    return None


@pytest.mark.parametrize("split", [False, True], ids=["listener", "tornado"])
async def test_both_paths_choose_the_same_subprotocol(server: RunningServer, split: bool) -> None:
    """MessagePack when offered (binary frames both ways); an unknown offer means JSON."""
    offer = "chat, switchboard.msgpack, switchboard.json"
    data = head(server.port, "", Sec_WebSocket_Protocol=offer)
    sock, response, frames = await upgrade(server.port, data, split)
    assert response.startswith(b"HTTP/1.1 101 ") and tornados(response) == split
    assert chosen_subprotocol(response) == "switchboard.msgpack"
    opcode, payload = await frames.next()
    assert opcode == 0x2 and ormsgpack.unpackb(payload)["push"] == "hello"
    await send(sock, frame(0x2, ormsgpack.packb({"id": 3, "op": "ping"})))
    opcode, payload = await frames.next()
    assert opcode == 0x2 and ormsgpack.unpackb(payload) == {"id": 3, "ok": True, "result": {}}
    sock.close()

    data = head(server.port, "", Sec_WebSocket_Protocol="chat")
    sock, response, frames = await upgrade(server.port, data, split)
    assert tornados(response) == split and chosen_subprotocol(response) is None
    assert (await frames.json())["push"] == "hello"
    await ping(frames, sock)
    sock.close()


async def test_other_paths_and_requests_are_served_by_tornado(server: RunningServer) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    await send(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 4096), 5):
        got += chunk
    assert got.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in got
    sock.close()


async def test_tornado_keeps_nothing_of_an_upgraded_connection(server: RunningServer) -> None:
    """Neither path leaves a handler, request or stream behind once the socket is handed over."""
    plain = await upgrade(server.port, head(server.port))
    split = await upgrade(server.port, head(server.port), split=True)
    for _, _, frames in (plain, split):
        assert (await frames.json())["push"] == "hello"
    gc.collect()
    kept = [
        type(o).__name__
        for o in gc.get_objects()
        if isinstance(o, (WebSocketHandler, tornado.iostream.IOStream, tornado.web.RequestHandler))
    ]
    assert kept == [], kept
    assert server.node.hub.client_count == 2
    for sock, _, _ in (plain, split):
        sock.close()


async def test_a_closed_connection_is_freed_without_the_cycle_collector(
    server: RunningServer,
) -> None:
    """The server runs full collections rarely (server/__main__.py), so a connection left in a
    reference cycle after its close would pile up for minutes: freed by refcounting, on both
    paths, after a subscribe and a close handshake or a plain hang-up."""
    from server.client import Connection
    from server.ws.websocket import WebSocket

    def alive() -> list[str]:
        kinds = (Connection, WebSocket)
        return [type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds)]

    gc.collect()
    gc.disable()
    try:
        conns = [await upgrade(server.port, head(server.port), split=s) for s in (False, True)]
        for i, (sock, _, frames) in enumerate(conns):
            assert (await frames.json())["push"] == "hello"
            cmd = {"id": 1, "op": "subscribe", "channel": f"quiet:c{i}"}
            await send(sock, frame(0x1, orjson.dumps(cmd)))
            assert "error" not in await frames.json()
        assert len(alive()) == 4
        await send(conns[0][0], close_frame(1000))
        conns[1][0].close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while (server.node.hub.client_count or alive()) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert server.node.hub.client_count == 0
        assert alive() == []
    finally:
        gc.enable()
        conns[0][0].close()


async def test_a_silent_connection_is_closed_after_the_idle_timeout(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[server] idle_timeout_s` holds for a connection waiting for its first bytes too."""
    monkeypatch.setattr(listener, "SWEEP_S", 0.1)
    fresh = await start_server(make_config(server={"idle_timeout_s": 0.3}))
    try:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", fresh.port))
        started = loop.time()
        assert await asyncio.wait_for(loop.sock_recv(sock, 1), 5) == b""  # closed by the sweep
        assert 0.2 <= loop.time() - started < 2
        sock.close()
        await asyncio.sleep(0.05)
        assert fresh.server.admission.open == 0
    finally:
        await fresh.stop()


async def test_the_listeners_upgrades_are_admitted_like_any_connection() -> None:
    """Direct connections are limited when accepted, before the listener sees them; a trusted
    proxy's upgrade is limited and charged by its forwarded address (held while it lives)."""
    cfg = make_config(
        server={"trusted_proxies": ["127.0.0.1"]},
        limits={"sockets_per_ip": 1, "connects_per_ip_per_s": 1000, "connects_per_ip_burst": 1000},
    )
    running = await start_server(cfg)
    gate = running.server.admission
    try:
        first = await upgrade(running.port, head(running.port, X_Forwarded_For="10.0.0.1"))
        assert first[1].startswith(b"HTTP/1.1 101 ") and not tornados(first[1])
        assert (await first[2].json())["push"] == "hello"
        assert gate.held_by("10.0.0.1") == 1
        again = await upgrade(running.port, head(running.port, X_Forwarded_For="10.0.0.1"))
        assert again[1].startswith(b"HTTP/1.1 429 ")  # from Tornado's path (_Forwarded)
        other = await upgrade(running.port, head(running.port, X_Forwarded_For="10.0.0.2"))
        assert other[1].startswith(b"HTTP/1.1 101 ") and not tornados(other[1])
        for sock, _, _ in (first, again, other):
            sock.close()
        for _ in range(100):
            if not gate.held_by("10.0.0.1") and not gate.open:
                break
            await asyncio.sleep(0.02)
        assert gate.held_by("10.0.0.1") == 0 and gate.open == 0
    finally:
        await running.stop()


async def test_a_stopped_server_leaves_upgrades_to_tornado(server: RunningServer) -> None:
    """Draining: a connection accepted before the stop is not upgraded by the listener."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    for _ in range(100):
        if server.server.admission.open:
            break
        await asyncio.sleep(0.01)
    server.server.stop()
    await send(sock, head(server.port))
    got = b""
    while b"\r\n\r\n" not in got:
        got += await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    assert tornados(got)
    sock.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_the_handshake_reads_only_what_it_understands() -> None:
    good = head(8000)
    req = handshake.Request.parse(good)
    assert req is not None and req.size == len(good) and handshake.upgradable(req)
    assert handshake.Request.parse(good[:-2]) is None  # incomplete
    assert handshake.Request.parse(good.replace(b"GET", b"POST")) is None
    assert handshake.Request.parse(good.replace(b"HTTP/1.1", b"HTTP/1.0")) is None
    assert handshake.Request.parse(good + b"x" * handshake.MAX_HEAD) is not None
    twice = good.replace(b"Upgrade: websocket", b"Upgrade: websocket\r\nUpgrade: websocket")
    assert handshake.Request.parse(twice) is None
    folded = good.replace(b"Upgrade: websocket", b"Upgrade:\r\n websocket")
    assert handshake.Request.parse(folded) is None
    no_key = handshake.Request.parse(good.replace(b"Sec-WebSocket-Key", b"X-Key"))
    assert no_key is not None and not handshake.upgradable(no_key)
    assert handshake.accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_the_handshake_docstring_example() -> None:
    assert doctest.testmod(handshake).failed == 0
