"""Test helpers: a protocol-speaking WebSocket client and a server running in the test's loop."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import orjson
import tornado.httpclient
import tornado.httpserver
import tornado.testing
import tornado.websocket

from server import config as config_mod
from server.app import build_node, make_app, make_server
from server.config import Config
from server.node import Node

API_KEY = "test-api-key-0123456789"
TOKEN_SECRET = "test-token-secret-0123456789-abcdefghij"


def make_config(data: dict[str, Any] | None = None, **sections: dict[str, Any]) -> Config:
    """A dev config with test secrets; `sections` merge into the TOML-shaped dict."""
    base: dict[str, Any] = {
        "security": {
            "secret": "test-cookie-secret-0123456789-abcdefghij",
            "token_secret": TOKEN_SECRET,
        },
        "api": {"key": API_KEY},
        # Tests connect from one address faster than any one client should.
        "limits": {
            "connects_per_ip_per_s": 100000,
            "connects_per_ip_burst": 100000,
            "publish_bytes_per_s": 1e9,
            "publish_bytes_burst": 1_000_000_000,
        },
        "namespaces": {
            "default": {
                "history_size": 100,
                "history_ttl_s": 600,
                "presence": True,
                "join_leave": True,
            },
            "chat": {
                "history_size": 50,
                "history_ttl_s": 600,
                "presence": True,
                "join_leave": True,
                "anonymous": False,
                "publish": "authenticated",
            },
            "feed": {"publish": "server"},
            "sub": {"publish": "subscribers"},
            "quiet": {},
        },
    }
    for name, values in {**(data or {}), **sections}.items():
        base[name] = {**base.get(name, {}), **values}
    return config_mod.from_dict(base, env={}, dev=True)


class LocalUrls:
    """The URLs of a server on a loopback port."""

    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@dataclass
class RunningServer(LocalUrls):
    node: Node
    port: int
    server: tornado.httpserver.HTTPServer

    async def stop(self) -> None:
        self.server.stop()
        for client in list(self.node.hub.clients()):
            client.disconnect(1001, "test over", True)
        await self.server.close_all_connections()
        await self.node.close()


async def start_server(cfg: Config, node: Node | None = None) -> RunningServer:
    node = node or build_node(cfg)
    await node.start()
    sock, port = tornado.testing.bind_unused_port()
    server = make_server(make_app(node), cfg)
    server.add_sockets([sock])
    return RunningServer(node, port, server)


@dataclass
class WsClient:
    """Speaks protocol v1: `call` sends a command and returns its reply; pushes are queued."""

    conn: tornado.websocket.WebSocketClientConnection
    hello: dict[str, Any]
    pushes: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    replies: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    errors: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    next_id: int = 1
    close_code: int | None = None
    _reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.conn.read_message()
            if msg is None:
                self.close_code = self.conn.close_code
                for fut in self.replies.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError(f"closed {self.close_code}"))
                await self.pushes.put({"closed": self.close_code})
                return
            obj = orjson.loads(msg)
            if "id" in obj and obj["id"] in self.replies:
                self.replies.pop(obj["id"]).set_result(obj)
            elif "push" in obj:
                await self.pushes.put(obj)
            else:
                await self.errors.put(obj)

    def send_raw(self, frame: str | bytes) -> None:
        self.conn.write_message(frame, binary=isinstance(frame, bytes))

    async def call(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        cmd_id = self.next_id
        self.next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[cmd_id] = fut
        self.conn.write_message(orjson.dumps({"id": cmd_id, "op": op, **fields}).decode())
        return await asyncio.wait_for(fut, timeout)

    async def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        reply = await self.call(op, **fields)
        assert "error" not in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    async def push(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.pushes.get(), timeout)

    async def push_of(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next push of `kind`, skipping others."""
        while True:
            msg = await self.push(timeout)
            if msg.get("push") == kind or ("closed" in msg and kind == "closed"):
                return msg

    async def closed(self, timeout: float = 5.0) -> int | None:
        await self.push_of("closed", timeout)
        return self.close_code

    async def close(self) -> None:
        self.conn.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 2)
            except (TimeoutError, Exception):
                self._reader.cancel()


async def ws_open(url: str, headers: dict[str, str] | None = None) -> WsClient:
    req = tornado.httpclient.HTTPRequest(url, headers=headers or {})
    conn = await tornado.websocket.websocket_connect(req)
    first = await conn.read_message()
    assert first is not None, "closed before hello"
    hello = orjson.loads(first)
    client = WsClient(conn, hello)
    client.start()
    return client


async def http(
    server: RunningServer,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = API_KEY,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """Call the HTTP API; returns (status, decoded JSON or text)."""
    headers = {"Authorization": f"apikey {key}"} if key else {}
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    if method == "POST" and data is None:
        data = b""
    req = tornado.httpclient.HTTPRequest(
        server.base_url + path, method=method, body=data, headers=headers
    )
    client = tornado.httpclient.AsyncHTTPClient()
    resp = await client.fetch(req, raise_error=False)
    text = resp.body or b""
    try:
        return resp.code, orjson.loads(text)
    except orjson.JSONDecodeError:
        return resp.code, text.decode()


def masked(payload: bytes) -> bytes:
    """A client text frame (masked, as RFC 6455 requires of clients)."""
    mask = os.urandom(4)
    n = len(payload)
    head = b"\x81" + (bytes([0x80 | n]) if n < 126 else b"\xfe" + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def raw_ws_connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    """A bare WebSocket client socket after the upgrade: it reads and answers nothing itself."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert b" 101 " in head, head
    return sock
