"""A real `python -m server` with a low open-files limit, and raw sockets to flood it with."""

from __future__ import annotations

import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from tests.redis_server import free_port
from tests.support import API_KEY

ROOT = Path(__file__).resolve().parent.parent


class LimitedServer:
    """`python -m server --dev` whose RLIMIT_NOFILE is lowered in the child before exec."""

    def __init__(self, workdir: Path, toml: str, nofile: int = 256) -> None:
        self.port = free_port()
        self.log_path = workdir / f"server-{self.port}.log"
        config = workdir / f"config-{self.port}.toml"
        config.write_text(toml)

        def lower_limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        env = {"SWITCHBOARD_MONGO_URL": "memory:", "SWITCHBOARD_API_KEY": API_KEY}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "--dev", "--config", str(config)]
                + ["--port", str(self.port)],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lower_limit,
            )
        self.ps = psutil.Process(self.proc.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if healthz(self.port, 1.0) is not None:
                return
            time.sleep(0.05)
        raise RuntimeError(f"server not ready:\n{self.log()}")

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def healthz(port: int, timeout: float = 2.0, source: str | None = None) -> float | None:
    """Seconds /healthz took to answer 200, or None when it did not within `timeout`."""
    start = time.monotonic()
    try:
        status, _, _ = request(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout, source)
    except OSError:
        return None
    return time.monotonic() - start if status == 200 else None


def connect(port: int, source: str | None = None, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket()
    try:
        sock.settimeout(timeout)
        if source is not None:
            sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def request(
    port: int, head: str, timeout: float = 5.0, source: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send a request and read the whole response (the server closes or Content-Length ends it)."""
    with connect(port, source, timeout) as sock:
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body


def is_closed(sock: socket.socket) -> bool:
    """Whether the server has closed this socket (without blocking)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        sock.setblocking(False)
        data = sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)
    return data == b"" or is_closed(sock)


def url_get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
