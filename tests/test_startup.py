"""A starting process holds its port but refuses connects until it can serve them, so clients
reconnecting after a restart retry on their own schedule rather than TCP's SYN backoff."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.process import sockets
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_bound_sockets_refuse_until_they_listen_and_a_taken_port_fails_at_bind() -> None:
    bound = sockets.bind(0, "127.0.0.1")
    port = bound[0].getsockname()[1]
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        sockets.listen(bound)
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with pytest.raises(OSError) as taken:
            sockets.bind(port, "127.0.0.1")
        assert taken.value.errno == errno.EADDRINUSE
    finally:
        for sock in bound:
            sock.close()


def test_a_starting_process_refuses_connects_until_it_answers_them(tmp_path: Path) -> None:
    """With the embedded MongoDB server start-up takes seconds. The first connect accepted is
    answered at once; one accepted while starting would wait out the whole start-up."""
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_MONGO_URL": "embedded",
        "SWITCHBOARD_MONGO_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--dev", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        refused = 0
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server never listened"
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            except ConnectionRefusedError:
                refused += 1
                time.sleep(0.02)
                continue
            break
        with conn:
            conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
            conn.settimeout(1.0)  # a loaded machine answers a serving process well within it
            assert conn.recv(64).startswith(b"HTTP/1.1 200")
        assert refused > 0
    finally:
        proc.terminate()
        proc.wait(30)
