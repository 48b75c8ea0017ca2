"""A Redis Cluster of our own: Debian's redis-server, 3 primaries and 3 replicas on free ports.

Joined the way an operator would, with `redis-cli --cluster create ... --cluster-replicas 1`.
A plain module (like tests/redis_server.py) so fixtures, the multi-host test and benchmarks can
all import it. The node timeout is short (1 s) so a killed primary's replica takes over within
a few seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis
from redis.crc import key_slot

from server.broker import redis_conn
from server.broker.redis import RedisBroker
from server.presence.redis import RedisPresence
from tests.redis_server import (
    TEST_TTL_S,
    PortTaken,
    answers_ping,
    free_port,
    on_free_ports,
    redis_server_binary,
)

NODE_TIMEOUT_MS = 1000


def redis_cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise RuntimeError("redis-cli not found: run `make services` as root (redis-tools)")
    return found


@dataclass
class Shard:
    """A primary as CLUSTER SHARDS... tells it: its address, id and slot ranges."""

    host: str
    port: int
    id: str
    slots: list[tuple[int, int]]

    def owns(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


class ClusterNodeProcess:
    def __init__(self, workdir: Path, host: str, port: int, prefix: list[str]) -> None:
        self.workdir, self.host, self.port, self.prefix = workdir, host, port, prefix
        self.bus_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                *self.prefix,
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--protected-mode",  # reached from other namespaces' addresses (multi-host)
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-port",  # the bus port: free too, not the default port + 10000
                str(self.bus_port),
                "--cluster-config-file",
                str(self.workdir / "nodes.conf"),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-require-full-coverage",
                "no",
                "--repl-diskless-sync-delay",  # replicas in sync at once, so they may take over
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def move(self) -> None:
        """Start again on other ports (another process took one of these)."""
        self.port, self.bus_port = free_port(), free_port()
        self.start()

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to hand anything over."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


class RedisClusterProcess:
    """Six cluster nodes; `create()` joins them, `stop()` ends them all."""

    def __init__(
        self,
        workdir: Path,
        hosts: list[str] | None = None,
        prefixes: list[list[str]] | None = None,
    ) -> None:
        hosts = hosts or ["127.0.0.1"] * 6
        prefixes = prefixes or [[] for _ in hosts]
        self.nodes = [
            ClusterNodeProcess(workdir / f"node{i}", h, free_port(), p)
            for i, (h, p) in enumerate(zip(hosts, prefixes, strict=True))
        ]

    @property
    def url(self) -> str:
        """A seed node: any one node is enough for the client to find the rest."""
        node = self.nodes[0]
        return f"redis://{node.host}:{node.port}/0"

    def cli(self, *args: str, node: ClusterNodeProcess | None = None, timeout: float = 60) -> str:
        node = node or self.alive()[0]
        out = subprocess.run(
            [*node.prefix, redis_cli(), "-h", node.host, "-p", str(node.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return out.stdout

    def alive(self) -> list[ClusterNodeProcess]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            on_free_ports(partial(wait_answering, node), node.move)
        addrs = [f"{n.host}:{n.port}" for n in self.nodes]
        self.cli("--cluster", "create", *addrs, "--cluster-replicas", "1", "--cluster-yes")
        self.wait_ok()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says the cluster is ok and agrees on three shard primaries,
        and every replica is in sync (a replica that never synced cannot take over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = [self.cli("cluster", "info", node=n) for n in self.alive()]
                views = {
                    tuple(sorted((s.port, s.id, tuple(s.slots)) for s in self.shards(n)))
                    for n in self.alive()
                }
                ok = all("cluster_state:ok" in s for s in states)
                links = [self.cli("info", "replication", node=n) for n in self.alive()]
                synced = all("role:master" in i or "master_link_status:up" in i for i in links)
                if ok and synced and len(views) == 1 and len(next(iter(views))) == 3:
                    return
            except (subprocess.CalledProcessError, redis.RedisError):
                pass
            time.sleep(0.1)
        raise RuntimeError("redis cluster did not settle")

    def shards(self, node: ClusterNodeProcess | None = None) -> list[Shard]:
        """The primaries serving slots, as one node sees them (CLUSTER SLOTS)."""
        node = node or self.alive()[0]
        with redis.Redis(node.host, node.port, socket_timeout=5) as r:
            ranges = r.execute_command("CLUSTER SLOTS")
        found: dict[str, Shard] = {}
        for lo, hi, primary, *_ in ranges:
            host, port, node_id = primary[0], primary[1], primary[2]
            host = host.decode() if isinstance(host, bytes) else host
            node_id = node_id.decode() if isinstance(node_id, bytes) else node_id
            shard = found.setdefault(node_id, Shard(host or node.host, int(port), node_id, []))
            shard.slots.append((int(lo), int(hi)))
        return list(found.values())

    def owner(self, slot: int) -> Shard:
        return next(s for s in self.shards() if s.owns(slot))

    def node_at(self, port: int) -> ClusterNodeProcess:
        return next(n for n in self.nodes if n.port == port)

    def reshard(self, source: Shard, target: Shard, slots: int) -> None:
        """Move `slots` of `source`'s slots (its lowest first) to `target`, keys and all."""
        self.cli(
            "--cluster",
            "reshard",
            f"{source.host}:{source.port}",
            "--cluster-from",
            source.id,
            "--cluster-to",
            target.id,
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
            node=self.node_at(source.port),
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def wait_answering(node: ClusterNodeProcess, timeout: float = 10.0) -> None:
    """Until the node answers PING; PortTaken when it exited first (its port or bus port was
    taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.prefix:  # in another network namespace: ask through redis-cli there
            done = subprocess.run(
                [*node.prefix, redis_cli(), "-h", node.host, "-p", str(node.port), "ping"],
                capture_output=True,
                text=True,
            )
            if done.stdout.strip() == "PONG":
                return
        elif answers_ping(node.host, node.port):
            return
        if node.proc is not None and node.proc.poll() is not None:
            node.proc = None
            raise PortTaken(f"redis cluster node {node.host}:{node.port} could not listen")
        time.sleep(0.05)
    raise RuntimeError(f"redis cluster node {node.host}:{node.port} did not start")


def channel_in_slot(slot: int, stem: str = "c") -> str:
    """A channel name whose hash tag lands in `slot` (found by counting: ~16k tries at most)."""
    i = 0
    while key_slot(f"{stem}{i}".encode()) != slot:
        i += 1
    return f"{stem}{i}"


def cluster_broker(url: str, prefix: str) -> RedisBroker:
    return RedisBroker(redis_conn.cluster_client(url), prefix, TEST_TTL_S)


def cluster_presence(url: str, prefix: str) -> RedisPresence:
    return RedisPresence(redis_conn.cluster_client(url), prefix, TEST_TTL_S)


def main() -> None:
    """`python -m tests.redis_cluster [DIR]`: a cluster for benchmarks; prints its seed URL and
    runs until interrupted."""
    import sys
    import tempfile

    cluster = RedisClusterProcess(Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()))
    cluster.start()
    print(cluster.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
