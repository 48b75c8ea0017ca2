"""server/ws/outbox.py: a client over max_pending_bytes gets whole frames, then the close frame.

Issue 11, defect 2: a frame the kernel took only part of had its rest dropped and the 4009 close
frame written inside it. Each test reads everything the server sent with a strict frame reader:
every frame whole, the close frame last, then the end of the connection.
"""

from __future__ import annotations

import asyncio
import struct

import orjson
import pytest

from tests.support import http, make_config, start_server
from tests.ws_support import ServerFrames, close_frame, echo_server, frame, send, ws_socket

pytestmark = pytest.mark.asyncio
CAP = 65536


async def read_to_the_close(frames: ServerFrames) -> list[tuple[int, bytes]]:
    """Every frame up to and including the close frame, each parsed whole."""
    seen = []
    while True:
        opcode, payload = await frames.next(timeout=10)
        seen.append((opcode, payload))
        if opcode == 0x8:
            return seen


async def test_a_reply_cut_by_the_kernel_is_finished_before_the_close() -> None:
    """A 5 MB history reply to a client that does not read, 64 KiB allowed unsent: the kernel
    takes part of it (about 2.5 MB on loopback) and the rest is over the cap."""
    server = await start_server(
        make_config(
            server={"max_pending_bytes": CAP, "max_message_bytes": CAP},
            limits={"command_rate": 1e4, "command_burst": 10**4},
        )
    )
    try:
        for i in range(100):
            status, _ = await http(
                server,
                "POST",
                "/api/publish",
                {"channel": "big", "data": {"i": i, "p": "x" * 50_000}},
            )
            assert status == 200
        sock = await ws_socket(server.port, "/ws", rcvbuf=4096)
        await send(sock, frame(0x1, orjson.dumps({"id": 1, "op": "history", "channel": "big"})))
        await asyncio.sleep(0.5)  # not reading: the kernel takes part of the reply, the rest waits
        seen = await read_to_the_close(ServerFrames(sock))
        texts = [orjson.loads(p) for op, p in seen if op == 0x1]
        assert texts[0]["push"] == "hello"
        reply = next(t for t in texts if t.get("id") == 1)
        assert len(reply["result"]["publications"]) == 100  # whole, every byte of it
        assert seen[-1] == (0x8, struct.pack("!H", 4009) + b"client too slow")
        await send(sock, close_frame(4009))
        await ServerFrames(sock).eof()
        sock.close()
    finally:
        await server.stop()


async def test_echoes_to_a_client_that_stopped_reading_end_on_a_frame_boundary() -> None:
    size = 200_000
    async with echo_server(size) as echo:  # 1 MiB may wait unsent
        sock, frames = await echo.open(rcvbuf=4096)
        sent = 0
        try:
            for i in range(40):  # 8 MB of echoes, never read while sending
                await asyncio.wait_for(send(sock, frame(0x2, bytes([i]) * size)), 2)
                sent += 1
        except TimeoutError:
            pass  # the server stopped reading: it has closed, or is about to
        await asyncio.sleep(0.3)
        seen = await read_to_the_close(frames)
        echoes = seen[:-1]
        assert 0 < len(echoes) < sent
        assert echoes == [(0x2, bytes([i]) * size) for i in range(len(echoes))]
        assert seen[-1] == (0x8, struct.pack("!H", 4009) + b"client too slow")
        sock.close()
