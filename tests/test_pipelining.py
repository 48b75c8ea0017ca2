"""Pipelined commands on one connection: publishes run at once, replies and offsets keep order.

Issue 19: one connection publishing through Redis waited a round trip per publish. Now
publish, history and presence run alongside each other, each reply leaves in command order, a
channel's publications are numbered in the order they came (the node batches them per channel),
and auth, subscribe and unsubscribe still run alone.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import ormsgpack
import pytest
import pytest_asyncio

from server import client
from tests.support import RunningServer, make_config, start_server
from tests.ws_support import ServerFrames, close_frame, frame, send, ws_socket

pytestmark = pytest.mark.asyncio
LIMITS = {"command_rate": 1e6, "command_burst": 10**6}


def cmd(cmd_id: int, op: str, **fields: Any) -> bytes:
    return frame(0x1, orjson.dumps({"id": cmd_id, "op": op, **fields}))


@pytest_asyncio.fixture(params=["memory", "redis+mongo"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    sections: dict[str, dict[str, Any]] = {"limits": LIMITS}
    if request.param != "memory":
        sections["redis"] = {
            "url": request.getfixturevalue("redis_url"),
            "prefix": f"t{secrets.token_hex(4)}",
        }
        sections["mongo"] = {
            "url": request.getfixturevalue("mongo_url"),
            "database": f"pipe{secrets.token_hex(4)}",
            "group_commit_ms": 2,
        }
    running = await start_server(make_config(**sections))
    yield running
    await running.stop()


async def read(frames: ServerFrames) -> dict[str, Any]:
    return cast(dict[str, Any], await frames.json())


async def connect(server: RunningServer) -> tuple[socket.socket, ServerFrames]:
    sock = await ws_socket(server.port, "/ws")
    frames = ServerFrames(sock)
    assert (await read(frames))["push"] == "hello"
    return sock, frames


async def test_pipelined_publishes_are_answered_and_numbered_in_order(
    server: RunningServer,
) -> None:
    """300 publishes (history on: the unstored window fills and drains) with pings between."""
    sock, frames = await connect(server)
    await send(sock, cmd(1, "subscribe", channel="room"))
    start = (await read(frames))["result"]["offset"]
    burst = b"".join(
        cmd(i, "ping") if i % 10 == 0 else cmd(i, "publish", channel="room", data={"i": i})
        for i in range(2, 302)
    )
    await send(sock, burst)
    replies: list[dict[str, Any]] = []
    pubs: list[dict[str, Any]] = []
    while len(replies) < 300 or len(pubs) < 270:
        msg = await read(frames)
        (pubs if msg.get("push") == "pub" else replies).append(msg)
    assert [r["id"] for r in replies] == list(range(2, 302))
    offsets = [r["result"]["offset"] for r in replies if r["id"] % 10]
    assert offsets == list(range(start + 1, start + 271))
    assert [p["offset"] for p in pubs] == offsets
    assert [p["data"]["i"] for p in pubs] == [i for i in range(2, 302) if i % 10]
    sock.close()


async def test_two_pipelining_connections_keep_each_ones_order(server: RunningServer) -> None:
    (a, fa), (b, fb) = await connect(server), await connect(server)
    await send(a, cmd(1, "subscribe", channel="shared"))
    await read(fa)
    for sock, tag in ((a, "a"), (b, "b")):
        await send(
            sock,
            b"".join(
                cmd(i, "publish", channel="shared", data={"from": tag, "i": i})
                for i in range(1, 101)
            ),
        )
    seen: dict[str, list[int]] = {"a": [], "b": []}
    while len(seen["a"]) + len(seen["b"]) < 200:
        msg = await read(fa)
        if msg.get("push") == "pub":
            seen[msg["data"]["from"]].append(msg["data"]["i"])
    assert seen == {"a": list(range(1, 101)), "b": list(range(1, 101))}
    b_replies = [(await read(fb))["id"] for _ in range(100)]
    assert b_replies == list(range(1, 101))
    a.close()
    b.close()


async def test_a_subscribe_waits_for_the_publishes_before_it(server: RunningServer) -> None:
    sock, frames = await connect(server)
    await send(
        sock,
        b"".join(cmd(i, "publish", channel="before", data=i) for i in range(1, 51))
        + cmd(51, "subscribe", channel="before")
        + cmd(52, "publish", channel="before", data=52),
    )
    seen: list[object] = []
    while len(seen) < 53:
        msg = await read(frames)
        seen.append(msg.get("id", msg.get("push")))
    assert seen[:51] == list(range(1, 52))
    subscribed_at = seen.index(51)
    assert sorted(seen[subscribed_at + 1 :], key=str) == [52, "pub"]  # the pub of 52 only
    sock.close()


async def test_past_the_limit_the_connection_waits_and_loses_nothing(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "MAX_RUNNING", 3)
    sock, frames = await connect(server)
    await send(sock, b"".join(cmd(i, "publish", channel="lim", data=i) for i in range(1, 201)))
    replies = [await read(frames) for _ in range(200)]
    assert [r["id"] for r in replies] == list(range(1, 201))
    offsets = [r["result"]["offset"] for r in replies]
    assert offsets == list(range(offsets[0], offsets[0] + 200))
    sock.close()


async def test_errors_keep_their_place_in_line(server: RunningServer) -> None:
    sock, frames = await connect(server)
    await send(
        sock,
        cmd(1, "publish", channel="x", data=1)
        + cmd(2, "publish", channel="feed:x", data=2)  # only the HTTP API publishes there
        + cmd(3, "history", channel="x")
        + cmd(4, "nonsense")
        + cmd(5, "publish", channel="x", data=5),
    )
    replies = [await read(frames) for _ in range(5)]
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5]
    assert [("error" in r) for r in replies] == [False, True, False, True, False]
    assert [p["offset"] for p in replies[2]["result"]["publications"]] == [
        replies[0]["result"]["offset"]
    ]
    await asyncio.sleep(0)
    sock.close()


async def test_over_the_rate_the_replies_before_come_first_then_the_close() -> None:
    running = await start_server(make_config(limits={"command_rate": 1, "command_burst": 5}))
    try:
        sock, frames = await connect(running)
        await send(sock, b"".join(cmd(i, "publish", channel="r", data=i) for i in range(1, 9)))
        seen = [await read(frames) for _ in range(7)]
        assert [m.get("id") for m in seen[:6]] == [1, 2, 3, 4, 5, 6]
        assert all("result" in m for m in seen[:5])
        assert seen[5]["error"]["code"] == "limit_exceeded"
        assert seen[6]["push"] == "disconnect" and seen[6]["code"] == 4008
        opcode, payload = await frames.next()
        assert (opcode, payload[:2]) == (0x8, b"\x0f\xa8")  # close 4008
        await send(sock, close_frame(4008))
        await frames.eof()
        sock.close()
    finally:
        await running.stop()


async def test_a_ping_frame_flood_closes_after_the_replies_before_it() -> None:
    """WebSocket pings cost a command (Connection.control_frame); over the rate, the replies of
    the publishes still running come first, then the disconnect push and the close."""
    running = await start_server(make_config(limits={"command_rate": 1, "command_burst": 5}))
    try:
        sock, frames = await connect(running)
        publishes = b"".join(cmd(i, "publish", channel="p", data=i) for i in range(1, 4))
        ping = b"\x89\x80" + bytes(4)  # a masked ping frame, empty payload
        await send(sock, publishes + ping * 10)
        seen: list[dict[str, Any]] = []
        while True:
            opcode, payload = await frames.next()
            if opcode == 0x8:
                assert payload[:2] == b"\x0f\xa8"  # close 4008
                break
            if opcode == 0x1:
                seen.append(orjson.loads(payload))
        assert [m.get("id") for m in seen[:3]] == [1, 2, 3]
        assert all("result" in m for m in seen[:3])
        assert seen[3]["push"] == "disconnect" and seen[3]["code"] == 4008
        sock.close()
    finally:
        await running.stop()


async def test_pipelined_publishes_over_msgpack_keep_their_order(server: RunningServer) -> None:
    """The `switchboard.msgpack` subprotocol: the same ordered replies, as binary frames."""
    sock = await ws_socket(server.port, "/ws", subprotocol="switchboard.msgpack")
    frames = ServerFrames(sock)
    opcode, payload = await frames.next()
    assert opcode == 0x2 and ormsgpack.unpackb(payload)["push"] == "hello"
    burst = b"".join(
        frame(0x2, ormsgpack.packb({"id": i, "op": "publish", "channel": "mp", "data": i}))
        for i in range(1, 101)
    )
    await send(sock, burst)
    replies = []
    for _ in range(100):
        opcode, payload = await frames.next()
        assert opcode == 0x2
        replies.append(ormsgpack.unpackb(payload))
    assert [r["id"] for r in replies] == list(range(1, 101))
    offsets = [r["result"]["offset"] for r in replies]
    assert offsets == list(range(offsets[0], offsets[0] + 100))
    sock.close()
