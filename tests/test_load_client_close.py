"""The load tester closes its connections the way RFC 6455 allows.

picows's `send_close()` defaults to close code 0, which §7.4 forbids: a strict server fails such
a connection with 1002 instead of closing it cleanly, so every churned connection of a soak
would count as a protocol violation on the server.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve

from switchboard_load.client import connect


@pytest.mark.asyncio
async def test_closing_sends_code_1000() -> None:
    received: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        await ws.send('{"push":"hello","client":"c1","version":1}')
        await ws.wait_closed()
        received.set_result(ws.close_code)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = await connect(f"ws://127.0.0.1:{port}/ws")
        client.close()
        assert await asyncio.wait_for(received, 5) == 1000
