"""The settings' shape: typed, frozen sections, each checking its own values.

Every mistake stops start-up with one line that names the key and says what is allowed: a
ConfigError, which the entry point prints before exiting with status 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from server.config.auth import AuthConfig
from server.config.base import _check
from server.protocol import Code, ProtocolError, split_channel

PLACEHOLDER_PREFIX = "change-me"
PUBLISH_MODES = ("anyone", "subscribers", "authenticated", "server")
SECURE_COOKIES = ("auto", "always")
EMBEDDED = "embedded"  # [mongo] url that runs the embedded server
MIN_SECRET_BITS = 128


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    ping_interval_s: float = 25.0
    max_message_bytes: int = 65536
    max_connections: int = 19000
    max_pending_bytes: int = 1048576
    shutdown_grace_s: float = 5.0
    drain_s: float = 10.0
    event_loop: str = "asyncio"
    write_delay_ms: float = 0.0  # frames wait this long to leave with later ones (not replies)
    # Hostile clients (docs/security.md): timeouts, the socket cap, proxies trusted.
    idle_timeout_s: float = 30.0
    body_timeout_s: float = 30.0
    max_sockets: int = 0  # 0: the open-files limit minus a reserve (server/process/admission.py)
    trusted_proxies: tuple[str, ...] = ()

    def validate(self) -> None:
        self._validate_hostile()
        _check(
            "server.event_loop",
            self.event_loop in ("asyncio", "uvloop"),
            "asyncio or uvloop",
            self.event_loop,
        )
        _check("server.port", 0 <= self.port <= 65535, "an integer from 0 to 65535", self.port)
        for key in ("ping_interval_s", "shutdown_grace_s"):
            v = getattr(self, key)
            _check(f"server.{key}", 0 < v <= 3600, "a number of seconds from 0 to 3600", v)
        for key in ("max_message_bytes", "max_connections", "max_pending_bytes"):
            v = getattr(self, key)
            _check(f"server.{key}", v >= 1, "a positive integer", v)
        # A message's echo or publication must fit in what a connection may have unsent.
        _check(
            "server.max_message_bytes",
            self.max_message_bytes <= self.max_pending_bytes,
            f"at most server.max_pending_bytes ({self.max_pending_bytes})",
            self.max_message_bytes,
        )
        _check("server.host", bool(self.host), "a host name or address", self.host)
        _check("server.drain_s", 0 <= self.drain_s <= 3600, "seconds from 0 to 3600", self.drain_s)
        _check(
            "server.write_delay_ms",
            0 <= self.write_delay_ms <= 1000,
            "milliseconds from 0 to 1000",
            self.write_delay_ms,
        )

    def _validate_hostile(self) -> None:
        for key in ("idle_timeout_s", "body_timeout_s"):
            v = getattr(self, key)
            _check(f"server.{key}", 0 < v <= 3600, "a number of seconds from 0 to 3600", v)
        _check(
            "server.max_sockets",
            self.max_sockets >= 0,
            "0 (from the open-files limit) or a positive integer",
            self.max_sockets,
        )
        for proxy in self.trusted_proxies:
            _check(
                "server.trusted_proxies",
                _is_network(proxy),
                'a list of addresses or CIDRs (e.g. "10.0.0.0/8")',
                proxy,
            )

    @property
    def loopback_host(self) -> bool:
        """Whether `host` is a loopback name or address (what --dev insists on)."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    secret: str = "change-me-cookie-secret-for-development-only"
    token_secret: str = "change-me-token-secret-for-development-only"
    allowed_origins: tuple[str, ...] = ()
    secure_cookies: str = "auto"  # "auto": Secure over https; "always": Secure on every cookie

    def validate(self) -> None:
        _check(
            "security.secure_cookies",
            self.secure_cookies in SECURE_COOKIES,
            " or ".join(SECURE_COOKIES),
            self.secure_cookies,
        )
        for key in ("secret", "token_secret"):
            v = getattr(self, key)
            _check(f"security.{key}", len(v) >= 32, "at least 32 characters", "<hidden>")
        for origin in self.allowed_origins:
            ok = origin == "*" or origin.startswith(("http://", "https://"))
            _check("security.allowed_origins", ok, "a list of http(s)://host[:port] or '*'", origin)


@dataclass(frozen=True, slots=True)
class ApiConfig:
    key: str = "change-me-api-key"

    def validate(self) -> None:
        _check("api.key", len(self.key) >= 16, "at least 16 characters", "<hidden>")


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str = ""
    prefix: str = "switchboard"
    presence_ttl_s: float = 30.0
    sharded: bool = True
    # Redis Cluster: `url` names one seed node; sharded pub/sub is then required.
    cluster: bool = False

    def validate(self) -> None:
        ok = not self.url or self.url.startswith(("redis://", "rediss://", "unix://"))
        _check("redis.url", ok, "empty (in-memory broker) or a redis:// URL", self.url)
        if self.cluster:
            ok = self.url.startswith(("redis://", "rediss://")) and urlsplit(self.url).path in (
                "",
                "/",
                "/0",
            )
            _check("redis.url", ok, "a redis:// URL of one seed node, db 0, with cluster", self.url)
            _check("redis.sharded", self.sharded, "true with cluster (SSUBSCRIBE)", self.sharded)
        ok = bool(self.prefix) and not set(self.prefix) & set("{}")
        _check("redis.prefix", ok, "a non-empty string without { or }", self.prefix)
        _check(
            "redis.presence_ttl_s",
            0.1 <= self.presence_ttl_s <= 3600,
            "a number of seconds from 0.1 to 3600",
            self.presence_ttl_s,
        )


@dataclass(frozen=True, slots=True)
class MongoConfig:
    url: str = ""
    database: str = "switchboard"
    data_dir: str = "./data"
    group_commit_ms: float = 2.0
    embedded_port: int = 0  # the embedded server's port on 127.0.0.1 (0: any free port)
    # Write concern of every write: "" picks "majority" when the URL names a replicaSet, else 1.
    write_concern: str = ""

    def validate(self) -> None:
        ok = self.url in ("", EMBEDDED) or self.url.startswith(
            ("mongodb://", "mongodb+srv://", "memory:")
        )
        _check("mongo.url", ok, 'a mongodb:// URL, "embedded", memory: or empty (--dev)', self.url)
        _check(
            "mongo.embedded_port",
            0 <= self.embedded_port <= 65535,
            "an integer from 0 (any free port) to 65535",
            self.embedded_port,
        )
        wc = self.write_concern
        ok = wc in ("", "majority") or (wc.isdigit() and 0 < int(wc) <= 50)
        _check("mongo.write_concern", ok, 'empty (automatic), "majority" or a number', wc)
        _check("mongo.database", bool(self.database), "a database name", self.database)
        _check("mongo.data_dir", bool(self.data_dir), "a directory", self.data_dir)
        _check(
            "mongo.group_commit_ms",
            0 <= self.group_commit_ms <= 100,
            "milliseconds from 0 (off) to 100",
            self.group_commit_ms,
        )


def url_database(url: str) -> str:
    """The database a mongodb:// URL names after its hosts (`mongodb://h1,h2/mydb?...`), or ""."""
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        return ""
    rest = url.partition("://")[2].split("?", 1)[0]
    return unquote(rest.rpartition("@")[2].partition("/")[2])


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """`[metrics]`: who may scrape /metrics besides holders of the API key."""

    token: str = ""  # `Authorization: Bearer <token>`: a read-only credential for Prometheus
    open_to: tuple[str, ...] = ()  # networks that scrape without credentials

    def validate(self) -> None:
        _check(
            "metrics.token",
            not self.token or len(self.token) >= 16,
            "empty or at least 16 characters",
            "<hidden>",
        )
        for net in self.open_to:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                _check("metrics.open_to", False, 'a list of networks, e.g. ["10.0.0.0/8"]', net)


#: Events a webhook can carry (server/webhooks/events.py).
WEBHOOK_EVENTS = (
    "user.online",
    "user.offline",
    "channel.occupied",
    "channel.vacated",
    "publication",
)


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    """`[webhooks]`: where events go, signed how, debounced and retried for how long."""

    url: str = ""  # empty: no webhooks
    secret: str = ""
    events: tuple[str, ...] = WEBHOOK_EVENTS
    offline_after_s: float = 5.0
    retry_for_s: float = 3600.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 300.0
    timeout_s: float = 10.0

    def validate(self) -> None:
        ok = not self.url or self.url.startswith(("http://", "https://"))
        _check("webhooks.url", ok, "empty (off) or an http(s):// URL", self.url)
        ok = not self.url or len(self.secret) >= 16
        _check("webhooks.secret", ok, "at least 16 characters when url is set", "<hidden>")
        for event in self.events:
            _check("webhooks.events", event in WEBHOOK_EVENTS, " or ".join(WEBHOOK_EVENTS), event)
        for key, low, high in (
            ("offline_after_s", 0.0, 3600.0),
            ("retry_for_s", 1.0, 30 * 86400.0),
            ("backoff_min_s", 0.01, 3600.0),
            ("backoff_max_s", 0.01, 86400.0),
            ("timeout_s", 0.1, 300.0),
        ):
            v = getattr(self, key)
            _check(f"webhooks.{key}", low <= v <= high, f"seconds from {low:g} to {high:g}", v)
        _check(
            "webhooks.backoff_max_s",
            self.backoff_max_s >= self.backoff_min_s,
            "at least backoff_min_s",
            self.backoff_max_s,
        )


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    command_rate: float = 100.0
    command_burst: int = 200
    malformed_per_minute: int = 20
    max_subscriptions: int = 1000
    # Hostile clients (docs/security.md): per-address admission and publish volume.
    sockets_per_ip: int = 1000
    connects_per_ip_per_s: float = 50.0
    connects_per_ip_burst: int = 100
    publish_bytes_per_s: float = 65536.0
    publish_bytes_burst: int = 262144

    def validate(self) -> None:
        _check("limits.command_rate", self.command_rate > 0, "a positive number", self.command_rate)
        for key in ("command_burst", "malformed_per_minute", "max_subscriptions"):
            v = getattr(self, key)
            _check(f"limits.{key}", v >= 1, "a positive integer", v)
        for key in ("connects_per_ip_per_s", "publish_bytes_per_s"):
            v = getattr(self, key)
            _check(f"limits.{key}", v > 0, "a positive number", v)
        for key in ("sockets_per_ip", "connects_per_ip_burst", "publish_bytes_burst"):
            v = getattr(self, key)
            _check(f"limits.{key}", v >= 1, "a positive integer", v)


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    history_size: int = 0
    history_ttl_s: float = 0.0
    presence: bool = False
    join_leave: bool = False
    anonymous: bool = True
    publish: str = "anyone"
    webhook_publications: bool = False  # send each publication to [webhooks] url

    @property
    def keeps_history(self) -> bool:
        return self.history_size > 0 and self.history_ttl_s > 0

    def validate(self, name: str) -> None:
        k = f"namespaces.{name}"
        _check(
            f"{k}.history_size",
            0 <= self.history_size <= 100_000,
            "an integer from 0 (no history) to 100000",
            self.history_size,
        )
        _check(
            f"{k}.history_ttl_s", self.history_ttl_s >= 0, "seconds, 0 or more", self.history_ttl_s
        )
        _check(
            f"{k}.publish", self.publish in PUBLISH_MODES, " or ".join(PUBLISH_MODES), self.publish
        )


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    mongo: MongoConfig = field(default_factory=MongoConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    namespaces: Mapping[str, NamespaceConfig] = field(
        default_factory=lambda: {"default": NamespaceConfig()}
    )
    auth: AuthConfig = field(default_factory=AuthConfig)
    dev: bool = False

    def namespace_of(self, channel: str) -> NamespaceConfig:
        """The namespace a (valid) channel belongs to (`ns:rest`, or `default`), or not_found.

        The one lookup: a command resolves its channel's namespace once, here, and passes it on.
        """
        name = split_channel(channel)[0]
        ns = self.namespaces.get(name)
        if ns is None:
            raise ProtocolError(Code.NOT_FOUND, f"unknown namespace {name!r}")
        return ns

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "security": SecurityConfig,
    "api": ApiConfig,
    "redis": RedisConfig,
    "mongo": MongoConfig,
    "limits": LimitsConfig,
    "metrics": MetricsConfig,
    "webhooks": WebhooksConfig,
}


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True
