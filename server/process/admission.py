"""Admission control: the sockets a process holds, and what one address may hold and open.

Why: every accepted socket is a file descriptor, and a process that runs out of them cannot
accept, answer /healthz, or reach Redis and MongoDB. So the process counts every socket it
accepts (HTTP and WebSocket alike) against `[server] max_sockets`, and each address against
`[limits] sockets_per_ip` and `[limits] connects_per_ip_per_s` (a token bucket with
`connects_per_ip_burst`). The HTTP server (server/process/httpserver.py) asks here before it
serves a connection; a socket gives its place back when it is closed, whoever closes it.

IPv6 addresses count by their /64: one client commonly holds a whole /64.

>>> from server.config import LimitsConfig
>>> gate = Admission(LimitsConfig(sockets_per_ip=1), max_sockets=10)
>>> gate.refusal("10.0.0.1") is None
True
>>> gate.charge("10.0.0.1")
>>> gate.refusal("10.0.0.1")
('sockets_per_ip', 10)
"""

from __future__ import annotations

import ipaddress
import logging
import resource
import socket
from collections.abc import Callable, Iterable

from server.config import LimitsConfig
from server.limits import TokenBucket
from server.process.logs import Throttle

log = logging.getLogger("switchboard.admission")

#: File descriptors left for everything but client sockets (Redis and MongoDB pools, the
#: event loop, logs, pipes): this many, or a twentieth of the limit if that is more.
FD_RESERVE = 100
#: Retry-After (seconds) for an address holding `sockets_per_ip` sockets.
SOCKETS_RETRY_S = 10
#: Forget an address's connect bucket once it has refilled; checked this often (seconds).
SWEEP_S = 10.0


def raise_open_files() -> int:
    """Lift the soft open-files limit to the hard one (as Go does); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def default_max_sockets() -> int:
    """The open-files limit minus a reserve (`[server] max_sockets = 0`)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - max(FD_RESERVE, soft // 20))


def address_key(ip: str) -> str:
    """What an address counts as: itself, or for IPv6 its /64."""
    if ":" not in ip:
        return ip
    try:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    except ValueError:
        return ip


class Networks:
    """A set of addresses and CIDRs (`[server] trusted_proxies`)."""

    def __init__(self, specs: Iterable[str]) -> None:
        self._nets = [ipaddress.ip_network(s, strict=False) for s in specs]

    def __bool__(self) -> bool:
        return bool(self._nets)

    def __contains__(self, ip: object) -> bool:
        if not self._nets or not isinstance(ip, str):
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._nets)


class Admission:
    """Counts sockets, per process and per address, and rate-limits connects per address."""

    def __init__(
        self,
        limits: LimitsConfig,
        max_sockets: int,
        on_room: Callable[[], None] | None = None,
    ) -> None:
        self.limits = limits
        self.max_sockets = max_sockets
        #: Accepting stops at max_sockets and resumes once this many or fewer are open.
        self.resume_at = max_sockets - max(1, max_sockets // 50)
        self.open = 0
        self.on_room = on_room  # called when the count falls to resume_at
        self._held: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self.throttle = Throttle(log)

    @property
    def full(self) -> bool:
        return self.open >= self.max_sockets

    def refusal(self, ip: str) -> tuple[str, int] | None:
        """Why a new connection from `ip` is refused and its Retry-After, or None (charged a
        connect)."""
        key = address_key(ip)
        if self._held.get(key, 0) >= self.limits.sockets_per_ip:
            return "sockets_per_ip", SOCKETS_RETRY_S
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(
                self.limits.connects_per_ip_per_s, self.limits.connects_per_ip_burst
            )
            self._buckets[key] = bucket
        if not bucket.take():
            return "connects_per_ip_per_s", max(1, round(bucket.wait_s() + 0.5))
        return None

    def opened(self) -> None:
        self.open += 1

    def closed(self) -> None:
        self.open -= 1
        if self.open == self.resume_at and self.on_room is not None:
            self.on_room()

    def charge(self, ip: str) -> None:
        key = address_key(ip)
        self._held[key] = self._held.get(key, 0) + 1

    def discharge(self, ip: str) -> None:
        key = address_key(ip)
        n = self._held.get(key, 0) - 1
        if n > 0:
            self._held[key] = n
        else:
            self._held.pop(key, None)

    def held_by(self, ip: str) -> int:
        return self._held.get(address_key(ip), 0)

    def sweep(self) -> None:
        """Forget the buckets of addresses that have been quiet long enough to refill."""
        for key in [k for k, b in self._buckets.items() if b.full]:
            del self._buckets[key]

    @property
    def tracked(self) -> int:
        """Addresses with a bucket or a socket (bounded by sweep)."""
        return len(self._buckets.keys() | self._held.keys())


class CountedSocket(socket.socket):
    """An accepted socket that gives its place back to the Admission when closed.

    Closing is the one thing every path does (IOStream, the WebSocket reader, a refusal), so
    the count cannot drift whoever ends the connection.
    """

    __slots__ = ("_gate", "_ip")

    def __init__(self, conn: socket.socket, gate: Admission) -> None:
        super().__init__(conn.family, conn.type, conn.proto, fileno=conn.detach())
        self._gate: Admission | None = gate
        self._ip: str | None = None
        gate.opened()

    def charge(self, ip: str) -> None:
        """Count this socket against `ip` (the peer, or the address a proxy forwarded)."""
        if self._gate is None or self._ip is not None:
            return
        self._ip = ip
        self._gate.charge(ip)

    def close(self) -> None:
        gate, self._gate = self._gate, None
        super().close()
        if gate is not None:
            if self._ip is not None:
                gate.discharge(self._ip)
            gate.closed()
