"""redis-server processes of our own, for tests and benchmarks: no persistence, free ports.

A plain module, not a pytest plugin, so fixtures and benchmarks may import it freely.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
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


#: Starts of a server whose port another process took first.
PORT_TRIES = 3


def free_port() -> int:
    """A port free now. Another process may still take it before the server binds it (any
    outgoing connection picks an ephemeral port): starts check for that (PortTaken)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(RuntimeError):
    """redis-server exited before answering: its port was taken between free_port and its
    bind (a CI run lost the whole cluster fixture to this once)."""


def on_free_ports(start: Callable[[], None], move: Callable[[], None]) -> None:
    """`start` (a server, or the wait for one); while it raises PortTaken, `move` to other
    ports and try again, PORT_TRIES times in all."""
    for attempt in range(PORT_TRIES):
        try:
            start()
            return
        except PortTaken:
            if attempt + 1 == PORT_TRIES:
                raise
            move()


def answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


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
        """Start on `port`; raise PortTaken when another process holds it."""
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
            if answers_ping("127.0.0.1", self.port):
                return
            if self.proc.poll() is not None:
                self.proc = None
                raise PortTaken(f"redis-server could not listen on port {self.port}")
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def started_redis(workdir: Path) -> RedisProcess:
    """A server on a free port (another one if the first is taken before it binds)."""
    server = RedisProcess(workdir)

    def move() -> None:
        server.port = free_port()

    on_free_ports(server.start, move)
    return server
