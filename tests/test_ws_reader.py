"""handlers/wsreader.py: the frame parser on crafted byte streams, then the reader on a socket."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio

from server.ws.frame import ProtocolViolation
from server.ws.parser import FrameParser
from tests.support import RunningServer, make_config, masked, raw_ws_connect, start_server

MAX = 1000
MASK = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = MASK, rsv: int = 0
) -> bytes:
    """A client frame: 7-, 16- or 64-bit length, masked unless mask is None."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def drain(parser: FrameParser) -> list[tuple[int, bytes]]:
    out = []
    while (msg := parser.next()) is not None:
        out.append(msg)
    return out


def parse_in_pieces(stream: bytes, cuts: list[int], max_size: int = MAX) -> list[tuple[int, bytes]]:
    parser = FrameParser(max_size)
    out: list[tuple[int, bytes]] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        parser.feed(stream[last:cut])
        out += drain(parser)
        last = cut
    assert parser.buffered == 0
    return out


# -- the parser --------------------------------------------------------------------------------

STREAM = (
    frame(0x1, b"hello")
    + frame(0x2, b"\x00\xff" * 100)  # 16-bit length
    + frame(0x9, b"ping!")
    + frame(0x1, b"")
    + frame(0xA, b"")
    + frame(0x1, "héllo".encode(), fin=False)
    + frame(0x9, b"between")
    + frame(0x0, b" wor", fin=False)
    + frame(0x0, b"ld")
    + frame(0x8, b"\x03\xe8bye")
)
MESSAGES = [
    (0x1, b"hello"),
    (0x2, b"\x00\xff" * 100),
    (0x9, b"ping!"),
    (0x1, b""),
    (0xA, b""),
    (0x9, b"between"),
    (0x1, "héllo world".encode()),
    (0x8, b"\x03\xe8bye"),
]


def test_all_frames_in_one_chunk() -> None:
    assert parse_in_pieces(STREAM, []) == MESSAGES


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_at_every_byte_boundary(cut: int) -> None:
    assert parse_in_pieces(STREAM, [cut]) == MESSAGES


def test_fed_one_byte_at_a_time() -> None:
    assert parse_in_pieces(STREAM, list(range(1, len(STREAM)))) == MESSAGES


def test_64_bit_length() -> None:
    payload = os.urandom(70000)
    data = frame(0x2, payload)
    assert data[1] == 0x80 | 127
    assert parse_in_pieces(data, list(range(1, len(data), 4096)), max_size=10**6) == [
        (0x2, payload)
    ]


def test_idle_parser_keeps_no_buffer() -> None:
    parser = FrameParser(MAX)
    parser.feed(frame(0x1, b"a") + frame(0x1, b"b")[:3])
    assert drain(parser) == [(0x1, b"a")]
    assert parser.buffered == 3
    parser.feed(frame(0x1, b"b")[3:])
    assert drain(parser) == [(0x1, b"b")]
    assert parser.buffered == 0 and parser._buf == b""


def violation(data: bytes, max_size: int = MAX) -> ProtocolViolation:
    parser = FrameParser(max_size)
    parser.feed(data)
    with pytest.raises(ProtocolViolation) as info:
        drain(parser)
    return info.value


def test_oversize_fails_on_the_header_alone() -> None:
    header = frame(0x1, b"x" * (MAX + 1))[:4]  # 16-bit length, no mask, no payload yet
    assert violation(header).code == 1009


def test_oversize_counts_the_fragments_so_far() -> None:
    data = frame(0x1, b"x" * 600, fin=False) + frame(0x0, b"y" * 401)[:4]
    assert violation(data).code == 1009


def test_message_at_the_limit_passes() -> None:
    parser = FrameParser(MAX)
    parser.feed(frame(0x1, b"x" * 600, fin=False) + frame(0x0, b"y" * 400))
    assert drain(parser) == [(0x1, b"x" * 600 + b"y" * 400)]


def test_unmasked_frame_is_a_protocol_error() -> None:
    exc = violation(frame(0x1, b"hi", mask=None))
    assert exc.code == 1002
    assert violation(b"\x81\x00").code == 1002  # even an empty one


@pytest.mark.parametrize(
    "data",
    [
        frame(0x1, b"x", rsv=0x40),  # reserved bits: no extension was negotiated
        frame(0x3, b"x"),  # reserved data opcode
        frame(0xB, b"x"),  # reserved control opcode
        frame(0x9, b"x", fin=False),  # fragmented control frame
        frame(0x9, b"x" * 126),  # control frame over 125 bytes
        frame(0x0, b"x"),  # continuation of nothing
        frame(0x1, b"a", fin=False) + frame(0x1, b"b"),  # a new message inside a fragmented one
    ],
    ids=[
        "rsv",
        "opcode3",
        "opcodeB",
        "fragmented-ping",
        "long-ping",
        "lone-continuation",
        "interleaved",
    ],
)
def test_malformed_frames_fail_with_1002(data: bytes) -> None:
    assert violation(data).code == 1002


# -- on a socket -------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(make_config(limits={"command_rate": 1e5, "command_burst": 10**5}))
    yield running
    await running.stop()


class ServerFrames:
    """Reads the server's (unmasked) frames from a raw client socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    async def _need(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        while len(self.buf) < n:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), 5)
            if not chunk:
                raise EOFError(f"closed with {self.buf!r} buffered")
            self.buf += chunk

    async def next(self) -> tuple[int, bytes]:
        await self._need(2)
        n, head = self.buf[1] & 0x7F, 2
        if n == 126:
            await self._need(4)
            n, head = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            await self._need(10)
            n, head = struct.unpack("!Q", self.buf[2:10])[0], 10
        await self._need(head + n)
        opcode, payload = self.buf[0] & 0x0F, self.buf[head : head + n]
        self.buf = self.buf[head + n :]
        return opcode, payload

    async def json(self) -> dict[str, object]:
        opcode, payload = await self.next()
        assert opcode == 0x1, (opcode, payload)
        return orjson.loads(payload)

    async def close_code(self) -> int:
        """The code of the server's close frame, skipping other frames; then EOF."""
        while True:
            opcode, payload = await self.next()
            if opcode == 0x8:
                break
        await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 1), 5)
        return int(struct.unpack("!H", payload[:2])[0])


async def connect(server: RunningServer) -> tuple[socket.socket, ServerFrames]:
    sock = await raw_ws_connect(server.port)
    frames = ServerFrames(sock)
    assert (await frames.json())["push"] == "hello"
    return sock, frames


async def gone(server: RunningServer) -> None:
    """Wait for the server to drop every connection (its close path runs to the end)."""
    for _ in range(500):
        if server.node.hub.client_count == 0:
            await asyncio.sleep(0.05)  # the rest of the close path: leaving channels, presence
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server kept the connection")


async def bye(server: RunningServer, sock: socket.socket, frames: ServerFrames) -> None:
    """Close cleanly: our close frame, the server's echo, the server forgets us."""
    await send(sock, frame(0x8, struct.pack("!H", 1000)))
    assert await frames.close_code() == 1000
    sock.close()
    await gone(server)


def cmd(cmd_id: int, op: str, **fields: object) -> bytes:
    return frame(0x1, orjson.dumps({"id": cmd_id, "op": op, **fields}))


async def send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


@pytest.mark.asyncio
async def test_many_frames_in_one_write_and_frames_split_across_writes(server) -> None:
    sock, frames = await connect(server)
    burst = b"".join(cmd(i, "ping") for i in range(1, 2001))  # past the yield threshold
    await send(sock, burst)
    last = cmd(2001, "ping")
    for byte in range(len(last)):
        await send(sock, last[byte : byte + 1])
        await asyncio.sleep(0)
    for i in range(1, 2002):
        assert await frames.json() == {"id": i, "ok": True, "result": {}}
    await bye(server, sock, frames)


@pytest.mark.asyncio
async def test_frames_sent_with_the_handshake(server) -> None:
    sock = socket.socket()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    await send(
        sock,
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        + cmd(1, "ping")
        + cmd(2, "ping"),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    frames = ServerFrames(sock)
    assert (await frames.json())["push"] == "hello"
    assert await frames.json() == {"id": 1, "ok": True, "result": {}}
    assert await frames.json() == {"id": 2, "ok": True, "result": {}}
    await bye(server, sock, frames)


@pytest.mark.asyncio
async def test_a_connections_commands_run_one_at_a_time(server) -> None:
    """A command that awaits I/O holds back the next frame, even one already received."""
    sock, frames = await connect(server)
    await send(
        sock,
        cmd(1, "subscribe", channel="room")
        + cmd(2, "ping")
        + cmd(3, "publish", channel="room", data=1)
        + cmd(4, "ping"),
    )
    seen = [(await frames.json()) for _ in range(5)]
    order = [m.get("id", m.get("push")) for m in seen]
    assert order.index(1) < order.index(2) < order.index(3) < order.index(4), order
    await bye(server, sock, frames)


@pytest.mark.asyncio
async def test_ping_gets_its_pong_and_fragments_interleave_with_control_frames(server) -> None:
    sock, frames = await connect(server)
    body = orjson.dumps({"id": 7, "op": "ping"})
    await send(
        sock,
        frame(0x1, body[:5], fin=False)
        + frame(0x9, b"are you there")
        + frame(0x0, body[5:9], fin=False)
        + frame(0x0, body[9:]),
    )
    assert await frames.next() == (0xA, b"are you there")
    assert await frames.json() == {"id": 7, "ok": True, "result": {}}
    await bye(server, sock, frames)


@pytest.mark.parametrize(
    "data, code",
    [
        (frame(0x1, b'{"id":1,"op":"ping"}\xff'), 1007),
        (frame(0x1, b'{"id":1,"op":"ping"}', mask=None), 1002),
        (frame(0x1, b"x" * 70000)[:10], 1009),  # the header alone: the payload is never sent
    ],
)
@pytest.mark.asyncio
async def test_protocol_errors_close_with_their_code(server, data: bytes, code: int) -> None:
    sock, frames = await connect(server)
    await send(sock, data)
    assert await frames.close_code() == code
    sock.close()
    await gone(server)


@pytest.mark.asyncio
async def test_close_frame_is_echoed_and_the_connection_leaves(server) -> None:
    sock, frames = await connect(server)
    assert server.node.hub.client_count == 1
    await send(sock, frame(0x8, struct.pack("!H", 4321) + b"bye"))
    assert await frames.close_code() == 4321
    sock.close()
    await gone(server)


@pytest.mark.asyncio
async def test_peer_vanishing_closes_the_connection(server) -> None:
    sock, _ = await connect(server)
    await send(sock, masked(b'{"id":1,"op":"ping"}')[:5])  # half a frame, then gone
    sock.close()
    await gone(server)
