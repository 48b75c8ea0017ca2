"""redis-server processes of our own, for tests and benchmarks: no persistence, free ports.

A plain module, not a pytest plugin, so fixtures and benchmarks may import it freely.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

#: Presence expiry in the fixtures' brokers and presences: short, so expiry tests are quick.
TEST_TTL_S = 1.0


def redis_server_binary() -> str:
    """Debian's redis-server; tools/install-services.sh installs it where we are root."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(
            "redis-server not found: run `make services` as root (installs "
            "Debian's redis-server), or set REDIS_URL to a Redis 7 server"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A redis-server of our own, without persistence, that tests may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def started_redis(workdir: Path) -> RedisProcess:
    server = RedisProcess(workdir)
    server.start()
    return server
