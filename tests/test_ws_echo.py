"""`python -m server.ws.echo`: the conformance entry point, as a user starts it.

Then an independent RFC 6455 suite (Autobahn|Testsuite's cases, run by kosoku through
tools/conformance.py) against it: no case may fail or be non-strict, at the default limit and
with 16 MiB messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket

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
