"""Three hosts on one machine: network namespaces on a bridge, each a Switchboard host.

Made as root with iproute2, on a bridge of its own with addresses in 198.18.N.0/24 (the range
RFC 2544 sets aside for benchmarks) that exist only on that bridge: no namespace has a route
anywhere else, and everything is removed by `close()`. The layout:

    root namespace  .1    the test (or benchmark) and its clients
    lb              .2    Debian's nginx with deploy/nginx/switchboard.conf, TLS on 443
    h1, h2, h3      .11+  `python -m server --processes 2` on :8000, two Redis Cluster nodes
                          each (primaries and replicas on different hosts); h3 also runs the
                          MongoDB-compatible server

A plain module: tests/test_multihost.py runs a short version, bench/multihost.py the long one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.redis_cluster import RedisClusterProcess

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx" / "switchboard.conf"
NGINX_HEALTH = ROOT / "deploy" / "nginx" / "upstream_health.py"
APP_PORT = 8000
MONGO_PORT = 27017


def available() -> str | None:
    """Why this machine cannot make the topology, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nginx", "openssl", "redis-server", "redis-cli"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (make services installs it)"
    return None


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True)


@dataclass
class Host:
    name: str
    ns: str
    addr: str
    prefix: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        with open(log, "ab") as out:
            self.procs.append(
                subprocess.Popen(
                    [*self.prefix, *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.PIPE,
                    env=env,
                    cwd=ROOT,
                )
            )


class Network:
    """A bridge and namespaces on it; `close()` removes them all."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(2)
        self.net = f"198.18.{int(self.tag, 16) % 250 + 2}"
        self.bridge = f"sbbr{self.tag}"
        self.hosts: dict[str, Host] = {}
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.net}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (no namespace routes through it)."""
        return f"{self.net}.1"

    def add(self, name: str, last_octet: int) -> Host:
        ns, veth = f"sb{self.tag}-{name}", f"sb{self.tag}{last_octet}"
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p")
        _run("ip", "link", "set", veth + "p", "netns", ns)
        _run("ip", "link", "set", veth, "master", self.bridge)
        _run("ip", "link", "set", veth, "up")
        addr = f"{self.net}.{last_octet}"
        inside = ["ip", "netns", "exec", ns]
        _run(*inside, "ip", "addr", "add", f"{addr}/24", "dev", veth + "p")
        _run(*inside, "ip", "link", "set", veth + "p", "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        host = self.hosts[name] = Host(name, ns, addr, inside)
        return host

    def close(self) -> None:
        procs = [p for host in self.hosts.values() for p in host.procs if p.poll() is None]
        for proc in procs:  # asked first: nginx's master then stops and reaps its workers
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for host in self.hosts.values():
            for proc in host.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
                if proc.stdin is not None:
                    proc.stdin.close()
            # And whatever those started (nginx's workers outlive a killed master).
            pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def make_certificate(directory: Path, address: str) -> Path:
    """A self-signed certificate for `address` (its own CA); returns the certificate's path."""
    tls = directory / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    _run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=switchboard.test",
        "-addext",
        f"subjectAltName=IP:{address}",
        "-keyout",
        str(tls / "switchboard.key"),
        "-out",
        str(tls / "switchboard.crt"),
    )
    return tls / "switchboard.crt"


# Four workers: a proxied WebSocket holds two descriptors in its worker, and one process may
# hold at most 20,000 here, so one worker would stop near 10,000 connections.
NGINX_MAIN = """
worker_processes 4;
worker_rlimit_nofile 200000;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 65536; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    include switchboard.conf;
}}
"""

#: The HTTP API key of every host (outside --dev it must be a strong one).
API_KEY = secrets.token_urlsafe(32)

SERVER_CONFIG = """
[limits]
command_rate = 100000
command_burst = 100000

[namespaces.default]
history_size = 2000
history_ttl_s = 600
"""


class MultiHost:
    """The whole topology; `start()` brings it up, `close()` takes everything down."""

    def __init__(self, workdir: Path, processes: int = 2, drain_s: float = 2.0) -> None:
        self.workdir = workdir
        self.processes = processes
        self.drain_s = drain_s
        self.net = Network()
        self.lb = self.net.add("lb", 2)
        self.apps = [self.net.add(f"h{i}", 10 + i) for i in (1, 2, 3)]
        self.cluster: RedisClusterProcess | None = None
        self.ca = Path()
        self.mongo_url = ""
        self.servers: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"wss://{self.lb.addr}/ws"

    @property
    def nginx_dir(self) -> Path:
        return self.workdir / "nginx"

    def start(self) -> None:
        self.cluster = RedisClusterProcess(
            self.workdir / "redis",
            hosts=[h.addr for h in self.apps * 2],
            prefixes=[h.prefix for h in self.apps * 2],
        )
        self.cluster.start()
        self._start_mongo(self.apps[2])
        for host in self.apps:
            self.start_server(host)
        for host in self.apps:
            self.wait_ready(host)
        self._start_nginx()

    # -- services -----------------------------------------------------------------------------

    def _start_mongo(self, host: Host) -> None:
        data = self.workdir / "mongo"
        data.mkdir(parents=True, exist_ok=True)
        code = (
            "import sys; from secantus import SecantusDBServer; "
            f"s = SecantusDBServer(host={host.addr!r}, port={MONGO_PORT}, "
            f"storage_path={str(data)!r}); s.start(); print('ready', flush=True); "
            "sys.stdin.read(); s.stop()"
        )
        host.popen([sys.executable, "-c", code], self.workdir / "mongo.log")
        self.mongo_url = f"mongodb://{host.addr}:{MONGO_PORT}/?directConnection=true"
        _wait_http_or_port(host.addr, MONGO_PORT)

    def start_server(self, host: Host) -> None:
        config = self.workdir / "switchboard.toml"
        config.write_text(SERVER_CONFIG)
        assert self.cluster is not None
        env = {
            **os.environ,
            "SWITCHBOARD_SERVER_HOST": host.addr,
            "SWITCHBOARD_SERVER_DRAIN_S": str(self.drain_s),
            "SWITCHBOARD_REDIS_URL": self.cluster.url,
            "SWITCHBOARD_REDIS_CLUSTER": "true",
            "SWITCHBOARD_REDIS_PRESENCE_TTL_S": "5",
            "SWITCHBOARD_MONGO_URL": self.mongo_url,
            "SWITCHBOARD_API_KEY": API_KEY,
            # Hosts listen beyond loopback, so not --dev: real secrets, and forwarded addresses
            # trusted from nginx only.
            "SWITCHBOARD_SECURITY_SECRET": secrets.token_urlsafe(32),
            "SWITCHBOARD_SECURITY_TOKEN_SECRET": secrets.token_urlsafe(32),
            "SWITCHBOARD_SERVER_TRUSTED_PROXIES": self.lb.addr,
            "SWITCHBOARD_LIMITS_CONNECTS_PER_IP_PER_S": "100000",
            "SWITCHBOARD_LIMITS_CONNECTS_PER_IP_BURST": "100000",
            "SWITCHBOARD_LIMITS_SOCKETS_PER_IP": "100000",
        }
        args = [sys.executable, "-m", "server", "--config", str(config)]
        args += ["--port", str(APP_PORT), "--processes", str(self.processes)]
        host.popen(args, self.workdir / f"{host.name}.log", env)
        self.servers[host.name] = host.procs[-1]

    def stop_server(self, host: Host) -> int:
        """SIGTERM the host's Switchboard: it drains its clients to the other hosts."""
        proc = self.servers.pop(host.name)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(60)

    def wait_ready(self, host: Host, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{host.addr}:{APP_PORT}/readyz"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            time.sleep(0.1)
        log = (self.workdir / f"{host.name}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{host.name} not ready:\n{log}")

    def _start_nginx(self) -> None:
        d = self.nginx_dir
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        self.ca = make_certificate(d, self.lb.addr)
        shutil.copy(NGINX_CONF, d / "switchboard.conf")  # exactly the shipped config
        upstreams = [f"{h.addr}:{APP_PORT}" for h in self.apps]
        _run(
            sys.executable,
            str(NGINX_HEALTH),
            "--once",
            "--out",
            str(d / "switchboard-upstreams.conf"),
            *upstreams,
        )
        (d / "nginx.conf").write_text(NGINX_MAIN.format(dir=d))
        self.lb.popen(
            ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
            self.workdir / "nginx.log",
        )
        health = [sys.executable, str(NGINX_HEALTH), "--out", str(d / "switchboard-upstreams.conf")]
        health += ["--reload", f"nginx -p {d} -c {d / 'nginx.conf'} -s reload", *upstreams]
        self.lb.popen(health, self.workdir / "health.log")
        _wait_http_or_port(self.lb.addr, 443)

    def upstreams(self) -> str:
        return (self.nginx_dir / "switchboard-upstreams.conf").read_text()

    def close(self) -> None:
        for proc in self.servers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.servers.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
        if self.cluster is not None:
            self.cluster.stop()
        self.net.close()


def _wait_http_or_port(addr: str, port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with socket.create_connection((addr, port), timeout=0.5):
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {addr}:{port}")
