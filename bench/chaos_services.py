"""The services a fault scenario runs and breaks: Redis with its data on disk, the embedded
MongoDB-compatible server, and `python -m server --processes N`, all on free loopback ports.

Why not bench/servers.py: those servers are started once and never touched; these are
stopped, killed and started again on the same port and data directory, and the Switchboard
parent's workers are looked up so that one of them can be killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.procinfo import age_s, children
from bench.servers import API_KEY, ONE_ADDRESS, ROOT, ServerFailed, free_port, log_tail
from server import assets
from server.store.embedded import EmbeddedError, EmbeddedMongo

#: The scenario's channels live here: history kept long enough for any outage, presence on
#: (its clean-ups are part of what a Redis restart disturbs), publishing through the API only.
CHAOS_NAMESPACE = """
[namespaces.chaos]
history_size = 1000
history_ttl_s = 3600
presence = true
join_leave = false
anonymous = true
publish = "server"
"""


def _wait(check: object, what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if callable(check) and check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise ServerFailed(
        f"{what} not ready in {timeout:.0f} s" + (f":\n{log_tail(log)}" if log else "")
    )


class RedisService:
    """A redis-server with an append-only file, so a restart may keep or drop its data."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ServerFailed("redis-server is not installed (make services installs it)")
        argv = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        argv += ["--maxclients", "10000", "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self._pong, "redis-server", 15, self.dir / "redis.log")

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.3) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self, keep_data: bool = True) -> None:
        """SIGTERM (Redis writes its append-only file out first), or SIGKILL and wipe."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGTERM if keep_data else signal.SIGKILL)
            proc.wait(30)
        if not keep_data:
            for entry in self.dir.iterdir():
                if entry.name != "redis.log":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


class MongoService:
    """The embedded MongoDB-compatible server (as `python -m server` runs it) on a fixed port."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "mongo"
        self.port = free_port()
        self._server: EmbeddedMongo | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        server = EmbeddedMongo(self.dir, port=self.port)
        deadline = time.monotonic() + 15
        while True:  # the port may still be held for a moment after a stop
            try:
                server.start()
                break
            except EmbeddedError as exc:
                if time.monotonic() > deadline:
                    raise ServerFailed(f"embedded MongoDB server: {exc}") from None
                time.sleep(0.2)
        self._server = server

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()


class Switchboard:
    """`python -m server --processes N` against the given Redis and MongoDB."""

    def __init__(self, workdir: Path, redis_url: str, mongo_url: str, processes: int) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.processes = processes
        self.log = workdir / "switchboard.log"
        self.env = {
            **os.environ,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_MONGO_URL": mongo_url,
            "SWITCHBOARD_API_KEY": API_KEY,
            **ONE_ADDRESS,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, drain_s: float, extra_env: dict[str, str] | None = None) -> None:
        config = self.workdir / "config.toml"
        config.write_text(assets.SAMPLE_CONFIG.read_text() + CHAOS_NAMESPACE)
        env = {**self.env, "SWITCHBOARD_SERVER_DRAIN_S": str(drain_s), **(extra_env or {})}
        argv = [sys.executable, "-m", "server", "--dev", "--config", str(config)]
        argv += ["--port", str(self.port), "--processes", str(self.processes)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        _wait(self._ready, "switchboard", 60, self.log)

    def _ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise ServerFailed(f"switchboard exited:\n{log_tail(self.log)}")
        if len(self.workers()) < self.processes:
            return False
        try:
            with urllib.request.urlopen(self.http_url + "/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except urllib.error.URLError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def workers(self) -> dict[int, float]:
        """The parent's worker processes: pid to seconds since it started."""
        ages = {pid: age_s(pid) for pid in children(self.pid)}
        return {pid: age for pid, age in ages.items() if age is not None}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
