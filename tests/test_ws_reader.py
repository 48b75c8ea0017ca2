"""server/ws/websocket.py on a socket, behind /ws: dispatch, ordering, closing handshake."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio

from tests.support import RunningServer, make_config, masked, start_server
from tests.ws_support import ServerFrames, close_frame, frame, send, ws_socket

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(make_config(limits={"command_rate": 1e5, "command_burst": 10**5}))
    yield running
    await running.stop()


async def connect(server: RunningServer, extra: bytes = b"") -> tuple[socket.socket, ServerFrames]:
    sock = await ws_socket(server.port, "/ws", extra=extra)
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
    await send(sock, close_frame(1000))
    assert await frames.close() == struct.pack("!H", 1000)
    sock.close()
    await gone(server)


def cmd(cmd_id: int, op: str, **fields: object) -> bytes:
    return frame(0x1, orjson.dumps({"id": cmd_id, "op": op, **fields}))


def pong(cmd_id: int) -> dict[str, object]:
    return {"id": cmd_id, "ok": True, "result": {}}


async def test_many_frames_in_one_write_and_frames_split_across_writes(
    server: RunningServer,
) -> None:
    sock, frames = await connect(server)
    burst = b"".join(cmd(i, "ping") for i in range(1, 2001))  # past the yield threshold
    await send(sock, burst)
    last = cmd(2001, "ping")
    for byte in range(len(last)):
        await send(sock, last[byte : byte + 1])
        await asyncio.sleep(0)
    for i in range(1, 2002):
        assert await frames.json() == pong(i)
    await bye(server, sock, frames)


async def test_frames_sent_with_the_handshake(server: RunningServer) -> None:
    sock, frames = await connect(server, extra=cmd(1, "ping") + cmd(2, "ping"))
    assert await frames.json() == pong(1)
    assert await frames.json() == pong(2)
    await bye(server, sock, frames)


async def test_a_connections_replies_come_in_command_order(server: RunningServer) -> None:
    """A subscribe holds back the frames after it; a publish runs alongside, its reply in line."""
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


async def test_ping_gets_its_pong_and_fragments_interleave_with_control_frames(
    server: RunningServer,
) -> None:
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
    assert await frames.json() == pong(7)
    await bye(server, sock, frames)


@pytest.mark.parametrize(
    "data, code",
    [
        (frame(0x1, b'{"id":1,"op":"ping"}\xff'), 1007),
        (frame(0x1, b'{"id":1,"op":"ping"}', mask=None), 1002),
        (frame(0x1, b'{"id":1,"op":"ping"}', rsv=0x40), 1002),
        (frame(0x1, b"x" * 70000)[:10], 1009),  # the header alone: the payload is never sent
        (close_frame(1005), 1002),
    ],
)
async def test_protocol_errors_close_with_their_code(
    server: RunningServer, data: bytes, code: int
) -> None:
    sock, frames = await connect(server)
    await send(sock, data)
    assert await frames.close_code() == code
    sock.close()
    await gone(server)


async def test_close_frame_is_echoed_and_the_connection_leaves(server: RunningServer) -> None:
    sock, frames = await connect(server)
    assert server.node.hub.client_count == 1
    await send(sock, close_frame(4321, b"bye"))
    assert await frames.close() == struct.pack("!H", 4321)
    sock.close()
    await gone(server)


async def test_peer_vanishing_closes_the_connection(server: RunningServer) -> None:
    sock, _ = await connect(server)
    await send(sock, masked(b'{"id":1,"op":"ping"}')[:5])  # half a frame, then gone
    sock.close()
    await gone(server)


# -- replies queued before a close go out before the close frame (issue 11, defect 1) ----------


async def test_a_reply_goes_out_before_the_close_that_followed_its_command(
    server: RunningServer,
) -> None:
    """A command and the client's close in one TCP segment: the reply, then the close."""
    sock, frames = await connect(server)
    await send(sock, cmd(1, "ping") + cmd(2, "ping") + close_frame(1000))
    assert await frames.json() == pong(1)
    assert await frames.json() == pong(2)
    assert await frames.close() == struct.pack("!H", 1000)
    sock.close()
    await gone(server)


async def test_a_command_awaiting_io_answers_before_the_close(server: RunningServer) -> None:
    sock, frames = await connect(server)
    await send(sock, cmd(1, "subscribe", channel="room") + close_frame(1001))
    reply = await frames.json()
    assert reply["id"] == 1 and "result" in reply, reply
    assert await frames.close() == struct.pack("!H", 1001)
    sock.close()
    await gone(server)


async def test_replies_go_out_before_a_violation_fails_the_connection(
    server: RunningServer,
) -> None:
    """Frames before the violation are answered; nothing after it is processed."""
    sock, frames = await connect(server)
    await send(sock, cmd(1, "ping") + frame(0x3, b"?") + cmd(2, "ping"))
    assert await frames.json() == pong(1)
    assert await frames.close() == struct.pack("!H", 1002) + b"reserved opcode 3"
    sock.close()
    await gone(server)


async def test_a_server_close_follows_the_frames_queued_before_it(server: RunningServer) -> None:
    """A policy close (4008 after malformed frames) comes after the error replies and push."""
    sock, frames = await connect(server)
    await send(sock, b"".join(frame(0x1, b"not json") for _ in range(25)))
    seen = []
    while True:
        opcode, payload = await frames.next()
        if opcode == 0x8:
            break
        if opcode == 0x1:  # (the keep-alive sweep may send a ping too)
            seen.append(orjson.loads(payload))
    assert struct.unpack("!H", payload[:2])[0] == 4008
    assert seen[-1]["push"] == "disconnect", seen[-1]
    assert all("error" in m for m in seen[:-1]) and len(seen) >= 2
    await send(sock, close_frame(4008))  # our answer: the server then ends the TCP connection
    await frames.eof()
    sock.close()
    await gone(server)


# -- protocol errors found as early as the RFC allows (issue 11, defects 3 and 4) ----------------


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000])
async def test_a_close_code_no_peer_may_send_is_answered_with_1002(
    server: RunningServer, code: int
) -> None:
    sock, frames = await connect(server)
    await send(sock, close_frame(code))
    assert (await frames.close())[:2] == struct.pack("!H", 1002)
    sock.close()
    await gone(server)


async def test_invalid_utf8_fails_with_the_fragment_that_makes_it_invalid(
    server: RunningServer,
) -> None:
    """The message is never finished: the close must come from the second fragment."""
    sock, frames = await connect(server)
    await send(sock, frame(0x1, b'{"id":1,"op":"ping","x":"', fin=False))
    await send(sock, frame(0x0, b"\xf4\x90\x80\x80", fin=False))  # U+110000: never valid
    assert (await frames.close(timeout=2))[:2] == struct.pack("!H", 1007)
    sock.close()
    await gone(server)
