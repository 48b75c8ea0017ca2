"""Raw-socket WebSocket client pieces for the transport tests (tests/test_ws_*.py).

No client library: frames are built byte by byte, so tests can send what a library would refuse
to (unmasked frames, reserved bits, bad lengths), and the server's bytes are read as they are.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import orjson
import tornado.httpserver
import tornado.testing

MASK = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int,
    payload: bytes,
    fin: bool = True,
    mask: bytes | None = MASK,
    rsv: int = 0,
    length: bytes | None = None,
) -> bytes:
    """A client frame: 7-, 16- or 64-bit length (or the `length` bytes given), masked unless
    mask is None."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if mask is not None else 0
    if length is not None:
        head += bytes([bit | length[0]]) + length[1:]
    elif n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    return head + mask + xor(mask, payload)


def xor(mask: bytes, payload: bytes) -> bytes:
    """Mask (or unmask) a payload, without the server's helper: an independent implementation."""
    whole = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(whole, "big")).to_bytes(
        len(payload), "big"
    )


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(0x8, b"" if code is None else struct.pack("!H", code) + reason)


class ServerFrames:
    """Reads the server's frames from a raw client socket, checking each is well formed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    async def _need(self, n: int, timeout: float = 5) -> None:
        loop = asyncio.get_running_loop()
        while len(self.buf) < n:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 20), timeout)
            if not chunk:
                raise EOFError(f"closed with {len(self.buf)} bytes of a frame buffered")
            self.buf += chunk

    async def next(self, timeout: float = 5) -> tuple[int, bytes]:
        await self._need(2, timeout)
        b0, b1 = self.buf[0], self.buf[1]
        assert b0 & 0x70 == 0 and b1 & 0x80 == 0, "server frames: no RSV bits, never masked"
        assert b0 & 0x80, "the server sends no fragments"
        n, head = b1 & 0x7F, 2
        if n == 126:
            await self._need(4, timeout)
            n, head = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            await self._need(10, timeout)
            n, head = struct.unpack("!Q", self.buf[2:10])[0], 10
        await self._need(head + n, timeout)
        opcode, payload = b0 & 0x0F, self.buf[head : head + n]
        self.buf = self.buf[head + n :]
        return opcode, payload

    async def json(self) -> dict[str, object]:
        """The next text frame's JSON, skipping pings (the keep-alive sweep's)."""
        opcode, payload = await self.next()
        while opcode == 0x9:
            opcode, payload = await self.next()
        assert opcode == 0x1, (opcode, payload)
        return orjson.loads(payload)  # type: ignore[no-any-return]

    async def close(self, timeout: float = 5) -> bytes:
        """The payload of the server's next frame, which must be its close frame; then EOF."""
        opcode, payload = await self.next(timeout)
        assert opcode == 0x8, (opcode, payload[:80])
        await self.eof()
        return payload

    async def close_code(self, timeout: float = 5) -> int:
        """The code of the server's close frame, skipping other frames; then EOF."""
        while True:
            opcode, payload = await self.next(timeout)
            if opcode == 0x8:
                break
        await self.eof()
        return int(struct.unpack("!H", payload[:2])[0])

    async def eof(self, timeout: float = 5) -> None:
        """The server closed the TCP connection (with a FIN: a reset raises) after its frames."""
        assert not self.buf, f"{len(self.buf)} bytes after the last frame"
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 1), timeout)
        assert data == b"", data


async def send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


async def ws_socket(
    port: int,
    path: str,
    rcvbuf: int | None = None,
    extra: bytes = b"",
    subprotocol: str | None = None,
) -> socket.socket:
    """A client socket after the upgrade to `path`; `extra` is sent with the handshake, and
    `subprotocol` offered (and required in the answer)."""
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
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            + (f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else "")
            + "\r\n"
        ).encode()
        + extra,
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert b" 101 " in head, head
    if subprotocol:
        assert f"\r\nSec-WebSocket-Protocol: {subprotocol}\r\n".encode() in head, head
    return sock


@dataclass
class Echo:
    """`python -m server.ws.echo`'s application, in the test's loop."""

    port: int
    max_message_bytes: int

    async def open(self, rcvbuf: int | None = None) -> tuple[socket.socket, ServerFrames]:
        sock = await ws_socket(self.port, "/echo", rcvbuf)
        return sock, ServerFrames(sock)


@asynccontextmanager
async def echo_server(max_message_bytes: int = 65536) -> AsyncIterator[Echo]:
    from server.ws import echo  # here: the socket helpers above also serve older trees

    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(echo.make_app(max_message_bytes))
    server.add_sockets([sock])
    try:
        yield Echo(port, max_message_bytes)
    finally:
        server.stop()
        await server.close_all_connections()
