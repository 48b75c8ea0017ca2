"""Command line of `switchboard-load`: scenario parameters, parsed and checked before
anything runs.

Why checks here: a load tester must only ever hit the addresses it is given, and a loopback-only
default keeps a typo from load-testing someone else's machine. Every bound (connections, duration,
drain) is explicit so a run always ends by itself.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import socket
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

SCENARIOS = ("hold", "fanout", "echo", "churn")
ENCODINGS = ("json", "msgpack")
#: Open sockets one worker process may hold: below the 20,000-fd hard limit, with headroom.
CONNS_PER_WORKER = 18_000
MAX_CONNECTIONS = 200_000
MAX_DURATION_S = 3600.0


class ParamError(ValueError):
    """A parameter that makes no sense; the message says which and why."""


@dataclass(frozen=True)
class Params:
    """Everything a run needs; also written into the result document as `params`."""

    scenario: str
    url: str
    duration: float = 10.0
    connections: int = 100
    connect_rate: float = 1000.0
    subscribers: int = 100
    publishers: int = 1
    rate: float = 100.0
    channels: int = 1
    churn_rate: float = 0.0
    churn_life: float = 1.0
    ping_rate: float = 0.0
    workers: int = 0
    source_addresses: tuple[str, ...] = ()
    token: str | None = None
    token_secret: str | None = None
    api_url: str | None = None
    api_key: str | None = None
    channel_prefix: str = "bench."
    payload_bytes: int = 0
    drain: float = 10.0
    connect_timeout: float = 10.0
    allow_remote: bool = False
    json_path: str | None = None
    plot_path: str | None = None
    quiet: bool = False
    subscribe: bool = False
    encoding: str = "json"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def holders(self) -> int:
        """Connections that stay open for the whole run (subscribers, echo clients or held)."""
        if self.scenario in ("hold", "echo"):
            return self.connections
        return self.subscribers

    def document(self) -> dict[str, Any]:
        """The run's parameters for the result document (secrets left out)."""
        d = asdict(self)
        for secret in ("token", "token_secret", "api_key"):
            d[secret] = "***" if d[secret] else None
        d.pop("extra")
        d["source_addresses"] = list(self.source_addresses)
        return d


def parse_addresses(spec: str) -> tuple[str, ...]:
    """`127.0.0.2-127.0.0.9` or `127.0.0.2,127.0.0.5`: the source IPs to bind, all loopback."""
    out: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo, _, hi = part.partition("-")
        try:
            first = ipaddress.IPv4Address(lo)
            last = ipaddress.IPv4Address(hi) if hi else first
        except ValueError as exc:
            raise ParamError(f"--source-addresses: {exc}") from None
        if last < first:
            raise ParamError(f"--source-addresses: range {part} runs backwards")
        if int(last) - int(first) > 255:
            raise ParamError(f"--source-addresses: range {part} is longer than 256 addresses")
        for n in range(int(first), int(last) + 1):
            addr = ipaddress.IPv4Address(n)
            if not addr.is_loopback:
                raise ParamError(f"--source-addresses: {addr} is not a loopback address")
            out.append(str(addr))
    return tuple(out)


def check_target(url: str, allow_remote: bool, schemes: tuple[str, ...]) -> None:
    """Refuse a URL whose host resolves to anything but loopback, unless allowed explicitly."""
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ParamError(f"{url!r} is not a {'/'.join(schemes)} URL with a host")
    if allow_remote:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ParamError(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise ParamError(
                f"{url} resolves to {info[4][0]}, which is not loopback; "
                "pass --allow-remote to load-test another machine you own"
            )


def default_workers(p: Params) -> int:
    """One worker per 18,000 open connections (the fd limit), at least one."""
    churners = math.ceil(p.churn_rate * p.churn_life * 2)
    return max(1, math.ceil((p.holders + p.publishers + churners) / CONNS_PER_WORKER))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="switchboard-load",
        description="Load-test a Switchboard server over protocol v1 (loopback targets only).",
    )
    ap.add_argument("scenario", choices=SCENARIOS)
    ap.add_argument("--url", required=True, help="ws://host:port/ws")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    ap.add_argument("--connections", type=int, default=100, help="hold/echo: connections")
    ap.add_argument("--connect-rate", type=float, default=1000.0, help="new connections per second")
    ap.add_argument("--subscribers", type=int, default=100, help="fanout/churn: held subscribers")
    ap.add_argument("--publishers", type=int, default=1)
    ap.add_argument("--rate", type=float, default=100.0, help="publications per second in total")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument(
        "--churn-rate", type=float, default=50.0, help="churn: connections opened per s"
    )
    ap.add_argument("--churn-life", type=float, default=1.0, help="churn: seconds each one lives")
    ap.add_argument(
        "--ping-rate",
        type=float,
        default=0.0,
        help="echo: pings/s per client (default 0: closed loop, as fast as replies come)",
    )
    ap.add_argument("--workers", type=int, default=0, help="worker processes (default: by fd need)")
    ap.add_argument("--source-addresses", default="", help="e.g. 127.0.0.2-127.0.0.9")
    ap.add_argument("--token", help="connection token (JWT) for every connection")
    ap.add_argument("--token-secret", help="mint HS256 connection tokens with this secret")
    ap.add_argument("--api-url", help="publish over the HTTP API at this base URL instead of WS")
    ap.add_argument("--api-key", help="API key for --api-url")
    ap.add_argument("--channel-prefix", default="bench.")
    ap.add_argument(
        "--payload-bytes", type=int, default=0, help="padding added to each publication"
    )
    ap.add_argument("--drain", type=float, default=10.0, help="max seconds to wait for stragglers")
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--allow-remote", action="store_true", help="permit non-loopback targets")
    ap.add_argument("--json", dest="json_path", help="write the result document here")
    ap.add_argument("--plot", dest="plot_path", help="write a PNG of latency and throughput")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument(
        "--subscribe",
        action="store_true",
        help="hold: subscribe every connection to a channel (of --channels)",
    )
    ap.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default="json",
        help="json, or msgpack: the switchboard.msgpack subprotocol (binary frames)",
    )
    return ap


def parse_params(argv: list[str] | None = None) -> Params:
    """Parse and validate; raises ParamError with a clear message on nonsense."""
    a = build_parser().parse_args(argv)
    p = Params(
        scenario=a.scenario,
        url=a.url,
        duration=a.duration,
        connections=a.connections,
        connect_rate=a.connect_rate,
        subscribers=a.subscribers,
        publishers=a.publishers,
        rate=a.rate,
        channels=a.channels,
        churn_rate=a.churn_rate if a.scenario == "churn" else 0.0,
        churn_life=a.churn_life,
        ping_rate=a.ping_rate,
        workers=a.workers,
        source_addresses=parse_addresses(a.source_addresses),
        token=a.token,
        token_secret=a.token_secret,
        api_url=a.api_url,
        api_key=a.api_key,
        channel_prefix=a.channel_prefix,
        payload_bytes=a.payload_bytes,
        drain=a.drain,
        connect_timeout=a.connect_timeout,
        allow_remote=a.allow_remote,
        json_path=a.json_path,
        plot_path=a.plot_path,
        quiet=a.quiet,
        subscribe=a.subscribe,
        encoding=a.encoding,
    )
    validate(p)
    if p.workers == 0:
        from dataclasses import replace

        p = replace(p, workers=default_workers(p))
    return p


def validate(p: Params) -> None:
    check_target(p.url, p.allow_remote, ("ws", "wss"))
    if p.api_url:
        check_target(p.api_url, p.allow_remote, ("http", "https"))
    if p.token and p.token_secret:
        raise ParamError("give --token or --token-secret, not both")
    if not 0 < p.duration <= MAX_DURATION_S:
        raise ParamError(f"--duration must be in (0, {MAX_DURATION_S:.0f}] seconds")
    for name in ("connections", "subscribers", "publishers", "channels", "workers"):
        if getattr(p, name) < 0:
            raise ParamError(f"--{name} must not be negative")
    if p.holders + p.publishers > MAX_CONNECTIONS:
        raise ParamError(f"at most {MAX_CONNECTIONS} connections per run")
    if p.scenario in ("fanout", "churn"):
        if p.channels < 1:
            raise ParamError("--channels must be at least 1")
        if p.publishers < 1 and not p.api_url:
            raise ParamError("fanout needs --publishers >= 1 or --api-url")
        if p.rate <= 0:
            raise ParamError("--rate must be positive")
    if p.ping_rate < 0:
        raise ParamError("--ping-rate must not be negative")
    if p.connect_rate <= 0:
        raise ParamError("--connect-rate must be positive")
    if p.scenario == "churn" and p.churn_rate <= 0:
        raise ParamError("--churn-rate must be positive")
    if p.workers and (p.holders + p.publishers) / p.workers > CONNS_PER_WORKER:
        raise ParamError(
            f"{p.holders + p.publishers} connections over {p.workers} workers exceeds "
            f"{CONNS_PER_WORKER} per worker (the fd limit); raise --workers"
        )
