"""`python -m server.ws.echo`: the conformance entry point, as a user starts it.

Then an independent RFC 6455 suite (Autobahn|Testsuite's cases, run by kosoku through
tools/conformance.py) against it: no case may fail or be non-strict, at the default limit and
with 16 MiB messages.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket

from tests.ws_support import ServerFrames, close_frame, send, ws_socket

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def echo_process() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.ws.echo", "--port", "0", "--max-message-bytes", "1000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    yield line.split()[-1]
    proc.terminate()
    assert proc.wait(10) == 0
    proc.stdout.close()


def _time_wait(server_port: int, client_port: int) -> bool:
    """Whether the server's side of this loopback connection is in TIME_WAIT."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    wanted = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}", "06")
    return any(tuple(row[1:4]) == wanted for row in rows)


@pytest.mark.asyncio
async def test_a_process_that_dies_resets_its_connections_and_leaves_no_time_wait() -> None:
    """Killed, the process's connections are reset by the kernel rather than closed: no
    TIME_WAIT is left to answer a client reconnecting from the same port with an ACK (its SYN
    then waits out TCP's retransmission, server/ws/websocket.py). A close still ends in a FIN."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.ws.echo", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[-1].rsplit(b":", 1)[1].split(b"/")[0])
        graceful = await ws_socket(port, "/echo")
        await send(graceful, close_frame(1000))
        assert await ServerFrames(graceful).close() == b"\x03\xe8"  # 1000, then a FIN
        graceful.close()

        sock = await ws_socket(port, "/echo")
        client_port = sock.getsockname()[1]
        proc.kill()
        proc.wait(10)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1), 5)
        sock.close()
        assert not _time_wait(port, client_port)
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.asyncio
async def test_echo_entry_point_serves_text_and_binary_on_loopback(echo_process: str) -> None:
    assert echo_process.startswith("ws://127.0.0.1:") and echo_process.endswith("/echo")
    conn = await tornado.websocket.websocket_connect(echo_process)  # no Origin header
    await conn.write_message("héllo")
    assert await conn.read_message() == "héllo"
    await conn.write_message(b"\x00\xff" * 500, binary=True)  # exactly the limit
    assert await conn.read_message() == b"\x00\xff" * 500
    await conn.write_message(b"x" * 1001, binary=True)
    assert await conn.read_message() is None
    assert conn.close_code == 1009
    conn.close()


@pytest.mark.asyncio
async def test_echo_accepts_any_origin(echo_process: str) -> None:
    request = tornado.httpclient.HTTPRequest(
        echo_process, headers={"Origin": "http://elsewhere.example"}
    )
    conn = await tornado.websocket.websocket_connect(request)
    await conn.write_message("hi")
    assert await conn.read_message() == "hi"
    conn.close()


def test_echo_refuses_a_limit_below_one() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server.ws.echo", "--max-message-bytes", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "--max-message-bytes" in result.stderr


@pytest.mark.parametrize("limit", [65536, 16 << 20], ids=["default-limit", "16MiB"])
def test_autobahn_cases_pass_without_failed_or_non_strict(limit: int) -> None:
    result = subprocess.run(
        [sys.executable, "tools/conformance.py", "--max-message-bytes", str(limit)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert f"max_message_bytes {limit}:" in summary
    for verdict in ("FAILED", "NON-STRICT", "UNCLEAN", "WRONG CODE", "ERROR"):
        assert verdict not in result.stdout, result.stdout
    # every case ran: 9.* up to the limit, only permessage-deflate (12.*, 13.*) left out
    total = int(summary.split(": ")[1].split()[0])
    assert total == (261 if limit == 65536 else 301), summary
