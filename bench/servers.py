"""Start the servers a benchmark runs against: Switchboard, the bare-Tornado baseline, Redis.

Why here: the suite and the end-to-end tests need the same start-up, with the same bounded wait
and the same clear message (and log tail) when a server does not come up.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server import assets
from switchboard_load.fdlimit import raise_nofile
from tests.redis_cluster import RedisClusterProcess

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "node"
#: Cores the servers run on (`taskset -c` syntax), when set; the tester's are its own variable.
SERVER_CPUS = "BENCH_SERVER_CPUS"
API_KEY = "bench-api-key-0123456789"
TOKEN_SECRET = "bench-token-secret-0123456789-abcdefghij"
#: Switchboard namespace the bench uses: history on (the product's real cost), no presence or
#: join/leave pushes (which would turn N joins into N² frames and measure something else).
BENCH_NAMESPACE = """
[namespaces.bench]
history_size = 100
history_ttl_s = 600
presence = false
join_leave = false
anonymous = true
publish = "anyone"
"""


class ServerFailed(RuntimeError):
    """A server did not start; the message holds the command and the end of its log."""


@dataclass
class Running:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _answers(port: int, ready_path: str | None) -> bool:
    if ready_path is None:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1) as resp:
        return bool(resp.status == 200)


def wait_listening(r: Running, timeout: float, ready_path: str | None = None) -> None:
    """Wait until the port accepts connections (or `ready_path` answers 200); fail fast if the
    process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.proc.poll() is not None:
            raise ServerFailed(f"{r.name} exited with code {r.proc.returncode}:\n{log_tail(r.log)}")
        try:
            if _answers(r.port, ready_path):
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise ServerFailed(
        f"{r.name} was not ready on port {r.port} within {timeout:.0f} s:\n{log_tail(r.log)}"
    )


@contextmanager
def started(
    name: str,
    argv: list[str],
    port: int,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    ready_path: str | None = None,
) -> Iterator[Running]:
    """Run `argv` until the block ends; its output goes to a log file kept for the message.

    The server gets the whole open-file limit (one socket is one fd) and, with
    BENCH_SERVER_CPUS (e.g. `0`), runs on those cores only (`taskset`), so a tester
    pinned to the others (BENCH_TESTER_CPUS) does not take its CPU time.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    log = tmp / "server.log"
    cpus = os.environ.get(SERVER_CPUS)
    if cpus and name != "redis":
        argv = ["taskset", "-c", cpus, *argv]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=raise_nofile,
        )
    r = Running(name, port, proc, log)
    try:
        wait_listening(r, timeout, ready_path)
        yield r
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def started_baseline(drop_offset: int | None = None) -> Iterator[Running]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.baseline_tornado",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
    ]
    if drop_offset is not None:
        argv += ["--drop-offset", str(drop_offset)]
    with started("baseline", argv, port) as r:
        yield r


#: The load comes from one address, faster and wider than any one client's should: lift the
#: per-address admission and publish-volume limits (docs/security.md).
ONE_ADDRESS = {
    "SWITCHBOARD_LIMITS_SOCKETS_PER_IP": "1000000",
    "SWITCHBOARD_LIMITS_CONNECTS_PER_IP_PER_S": "1000000",
    "SWITCHBOARD_LIMITS_CONNECTS_PER_IP_BURST": "1000000",
    "SWITCHBOARD_LIMITS_PUBLISH_BYTES_PER_S": "1000000000",
    "SWITCHBOARD_LIMITS_PUBLISH_BYTES_BURST": "1000000000",
}


@contextmanager
def started_node() -> Iterator[Running]:
    """The bare Node.js + ws server (bench/node/server.js), with the bench's API key and token
    secret; `make bench` installs its one dependency (npm ci --prefix bench/node)."""
    node = shutil.which("node")
    if node is None:
        raise ServerFailed("node is not installed: the Node.js baseline needs Node.js 20")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        raise ServerFailed("ws is not installed: run `npm ci --prefix bench/node` (make bench)")
    port = free_port()
    argv = [
        node,
        str(NODE_DIR / "server.js"),
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--token-secret",
        TOKEN_SECRET,
    ]
    with started("node", argv, port) as r:
        yield r


@contextmanager
def started_switchboard(
    processes: int = 1,
    redis_url: str | None = None,
    max_connections: int = 19_000,
    mongo_url: str = "memory:",
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> Iterator[Running]:
    """`python -m server --dev` with the bench namespace, bench secrets and no command limits;
    `env` adds or overrides settings (e.g. SWITCHBOARD_SERVER_DRAIN_S)."""
    if not (ROOT / "server" / "__main__.py").exists():
        raise ServerFailed("Switchboard is not there yet: server/__main__.py is missing")
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-config-"))
    config = tmp / "config.toml"
    config.write_text(assets.SAMPLE_CONFIG.read_text() + BENCH_NAMESPACE)
    settings = {
        "SWITCHBOARD_API_KEY": API_KEY,
        "SWITCHBOARD_SECURITY_TOKEN_SECRET": TOKEN_SECRET,
        "SWITCHBOARD_MONGO_URL": mongo_url,
        "SWITCHBOARD_MONGO_DATA_DIR": str(tmp / "data"),
        "SWITCHBOARD_LIMITS_COMMAND_RATE": "1000000",
        "SWITCHBOARD_LIMITS_COMMAND_BURST": "1000000",
        "SWITCHBOARD_SERVER_MAX_CONNECTIONS": str(max_connections),
        "SWITCHBOARD_SERVER_MAX_SOCKETS": str(max_connections + 50),
        **ONE_ADDRESS,
        **(env or {}),
    }
    if redis_url:
        settings["SWITCHBOARD_REDIS_URL"] = redis_url
    argv = [
        sys.executable,
        "-m",
        "server",
        "--dev",
        "--config",
        str(config),
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]
    if processes > 1:
        argv += ["--processes", str(processes)]
    try:
        with started("switchboard", argv, port, settings, timeout, "/readyz") as r:
            yield r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def started_redis() -> Iterator[str]:
    """A throwaway redis-server on a free port, no persistence; yields its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise ServerFailed("redis-server is not installed (make services installs it)")
    port = free_port()
    argv = [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxclients",
        "10000",
    ]
    with started("redis", argv, port, timeout=15) as r:
        yield f"redis://127.0.0.1:{r.port}/0"


#: Settings for Switchboard against the cluster `started_cluster` yields.
CLUSTER_ENV = {"SWITCHBOARD_REDIS_CLUSTER": "true", "SWITCHBOARD_REDIS_SHARDED": "true"}


@contextmanager
def started_cluster() -> Iterator[str]:
    """A throwaway Redis Cluster (3 primaries, 3 replicas; tests/redis_cluster.py) for as long
    as the block runs; yields a seed URL. On the way out it prints each primary's CPU and
    SPUBLISH calls over the block, the figures of a shard's pub/sub capacity."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    cluster = RedisClusterProcess(tmp)
    try:
        cluster.start()
    except (RuntimeError, subprocess.SubprocessError) as exc:
        cluster.stop()
        raise ServerFailed(f"redis cluster: {exc}") from exc
    before = {s.port: _shard_counters(cluster, s.port) for s in cluster.shards()}
    t0 = time.monotonic()
    try:
        yield cluster.url
    finally:
        elapsed = time.monotonic() - t0
        for port, (cpu0, calls0) in before.items():
            cpu1, calls1 = _shard_counters(cluster, port)
            calls = calls1 - calls0
            per = f"{(cpu1 - cpu0) / calls * 1e6:.2f} µs CPU per SPUBLISH" if calls else "idle"
            print(f"   shard :{port}: {calls / elapsed:,.0f} SPUBLISH/s, {per}", flush=True)
        cluster.stop()


def _shard_counters(cluster: RedisClusterProcess, port: int) -> tuple[float, int]:
    """A primary's CPU seconds (user + sys) and SPUBLISH calls so far (scripts' included)."""
    node = cluster.node_at(port)
    info = cluster.cli("info", "all", node=node)
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    cpu = float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])
    stat = fields.get("cmdstat_spublish", "calls=0")
    return cpu, int(stat.split(",")[0].split("=")[1])
