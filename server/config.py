"""Typed, frozen settings from config.toml, with SWITCHBOARD_<SECTION>_<KEY> overrides.

Every mistake in a config stops start-up with one line that names the key and says what is
allowed: a ConfigError, which the entry point prints before exiting with status 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import unquote

from server.protocol import split_channel

PLACEHOLDER_PREFIX = "change-me"
PUBLISH_MODES = ("anyone", "subscribers", "authenticated", "server")


class ConfigError(Exception):
    """A config mistake, phrased for the person who made it."""


def _check(key: str, ok: bool, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {allowed}, got {value!r}")


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

    def validate(self) -> None:
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
        _check("server.host", bool(self.host), "a host name or address", self.host)
        _check("server.drain_s", 0 <= self.drain_s <= 3600, "seconds from 0 to 3600", self.drain_s)


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    secret: str = "change-me-cookie-secret-for-development-only"
    token_secret: str = "change-me-token-secret-for-development-only"
    allowed_origins: tuple[str, ...] = ()

    def validate(self) -> None:
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

    def validate(self) -> None:
        ok = not self.url or self.url.startswith(("redis://", "rediss://", "unix://"))
        _check("redis.url", ok, "empty (in-memory broker) or a redis:// URL", self.url)
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

    def validate(self) -> None:
        ok = not self.url or self.url.startswith(("mongodb://", "mongodb+srv://", "memory:"))
        _check("mongo.url", ok, "empty (embedded), memory: or a mongodb:// URL", self.url)
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

    def validate(self) -> None:
        _check("limits.command_rate", self.command_rate > 0, "a positive number", self.command_rate)
        for key in ("command_burst", "malformed_per_minute", "max_subscriptions"):
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
class GitHubConfig:
    """`[auth.github]`: an OAuth app; the URLs change only to point tests at a fake GitHub."""

    client_id: str = ""
    client_secret: str = ""
    authorize_url: str = "https://github.com/login/oauth/authorize"
    token_url: str = "https://github.com/login/oauth/access_token"
    api_url: str = "https://api.github.com"

    @property
    def enabled(self) -> bool:
        return bool(self.client_id)

    def validate(self, key: str = "auth.github") -> None:
        _validate_client(key, self.client_id, self.client_secret)
        for name in ("authorize_url", "token_url", "api_url"):
            _check(
                f"{key}.{name}",
                _is_url(getattr(self, name)),
                "an http(s):// URL",
                getattr(self, name),
            )


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """`[auth.google]` and `[auth.oidc.NAME]`: an OpenID Connect client of `issuer`."""

    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    label: str = ""  # button text; the provider's name when empty

    @property
    def enabled(self) -> bool:
        return bool(self.client_id)

    def validate(self, key: str) -> None:
        _validate_client(key, self.client_id, self.client_secret)
        _check(f"{key}.issuer", _is_url(self.issuer), "the issuer's http(s):// URL", self.issuer)


GOOGLE_ISSUER = "https://accounts.google.com"
SESSION_TTL_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class DevAuthConfig:
    enabled: bool = False


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """`[auth]`: sessions, admins and the login providers (only configured ones are offered).

    `admins` lists provider identities as "provider:subject" (e.g. "github:583231", GitHub's
    numeric id, which unlike the login name never changes hands), so an admin can be named
    before their first sign-in and stays one whatever store holds the users.
    """

    session_ttl_s: float = SESSION_TTL_S
    admins: tuple[str, ...] = ()
    base_url: str = ""  # public URL for redirect URIs behind a proxy; empty: from the request
    github: GitHubConfig = field(default_factory=GitHubConfig)
    google: OidcConfig = field(default_factory=lambda: OidcConfig(issuer=GOOGLE_ISSUER))
    oidc: Mapping[str, OidcConfig] = field(default_factory=dict)
    dev: DevAuthConfig = field(default_factory=DevAuthConfig)

    def validate(self, dev_mode: bool) -> None:
        _check(
            "auth.session_ttl_s",
            60 <= self.session_ttl_s <= 365 * 86400,
            "seconds from 60 to 31536000",
            self.session_ttl_s,
        )
        for admin in self.admins:
            provider, _, subject = admin.partition(":")
            _check(
                "auth.admins",
                bool(provider and subject),
                'a list of "provider:subject" (e.g. "github:583231")',
                admin,
            )
        _check(
            "auth.base_url",
            not self.base_url or _is_url(self.base_url),
            "empty or the public http(s):// URL of this server",
            self.base_url,
        )
        self.github.validate()
        self.google.validate("auth.google")
        for name, oidc in self.oidc.items():
            oidc.validate(f"auth.oidc.{name}")
        if self.dev.enabled and not dev_mode:
            raise ConfigError(
                "auth.dev.enabled: the development login signs anyone in as any user, so it "
                "is refused outside --dev; set it to false (or SWITCHBOARD_AUTH_DEV_ENABLED=false)"
            )


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://")) and len(value) > len("https://")


def _validate_client(key: str, client_id: str, client_secret: str) -> None:
    _check(
        f"{key}.client_secret",
        not client_id or bool(client_secret),
        "set when client_id is set",
        "",
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

    def namespace(self, name: str) -> NamespaceConfig | None:
        return self.namespaces.get(name)

    def namespace_of(self, channel: str) -> NamespaceConfig | None:
        """The namespace a channel belongs to (`ns:rest`, or `default`), if it is configured."""
        return self.namespaces.get(split_channel(channel)[0])

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
ENV_PREFIX = "SWITCHBOARD_"


class _Asked(Mapping[str, str]):
    """The environment, remembering which names the config asked for: the others are typos."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.asked: set[str] = set()

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return key in self._env

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._env[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)

    def refuse_unknown(self) -> None:
        """A SWITCHBOARD_* variable no key reads would be silently ignored: stop instead."""
        unknown = sorted(k for k in self._env if k.startswith(ENV_PREFIX) and k not in self.asked)
        if not unknown:
            return
        close = difflib.get_close_matches(unknown[0], sorted(self.asked), n=1, cutoff=0.8)
        hint = (
            f"did you mean {close[0]}?"
            if close
            else "variables are SWITCHBOARD_<SECTION>_<KEY> for the keys of config.toml"
        )
        raise ConfigError(f"{unknown[0]}: unknown environment variable ({hint})")


def _coerce(key: str, typ: Any, value: Any, from_env: bool) -> Any:
    """Turn a TOML (or environment) value into the field's type, or raise ConfigError."""
    if from_env:
        value = _parse_env(key, typ, value)
    if typ is bool:
        _check(key, isinstance(value, bool), "true or false", value)
    elif typ is int:
        _check(key, type(value) is int, "an integer", value)
    elif typ is float:
        ok = type(value) in (int, float)
        _check(key, ok, "a number", value)
        value = float(value)
    elif typ is str:
        _check(key, isinstance(value, str), "a string", value)
    elif typ == tuple[str, ...]:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        _check(key, ok, "a list of strings", value)
        value = tuple(value)
    return value


def _parse_env(key: str, typ: Any, raw: str) -> Any:
    try:
        if typ is bool:
            return {"true": True, "1": True, "false": False, "0": False}[raw.strip().lower()]
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ == tuple[str, ...]:
            return [v.strip() for v in raw.split(",") if v.strip()]
    except (KeyError, ValueError):
        return raw  # the type check then names what is allowed
    return raw


def _build(cls: type, key: str, table: Any, env: Mapping[str, str], env_prefix: str) -> Any:
    _check(key, isinstance(table, dict), "a table", table)
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(names))})")
    values: dict[str, Any] = {}
    for name in names:
        env_name = f"{env_prefix}_{name}".upper()
        if env_name in env:
            values[name] = _coerce(
                f"{key}.{name} (from {env_name})", hints[name], env[env_name], True
            )
        elif name in table:
            values[name] = _coerce(f"{key}.{name}", hints[name], table[name], False)
    return cls(**values)


def load(
    path: str | Path | None, env: Mapping[str, str] | None = None, dev: bool = False
) -> Config:
    """Read and validate a config file (None: defaults only) with environment overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found (pass --config PATH)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data, env, dev)


def from_dict(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None, dev: bool = False
) -> Config:
    asked = _Asked({} if env is None else env)
    env = asked
    unknown = sorted(set(data) - set(SECTIONS) - {"namespaces", "auth"})
    if unknown:
        allowed = ", ".join([*SECTIONS, "namespaces", "auth"])
        raise ConfigError(f"{unknown[0]}: unknown section (allowed: {allowed})")
    sections = {
        name: _build(cls, name, data.get(name, {}), env, f"SWITCHBOARD_{name}")
        for name, cls in SECTIONS.items()
    }
    namespaces = _namespaces(data.get("namespaces", {}), env)
    auth = _auth(data.get("auth", {}), env)
    asked.refuse_unknown()
    explicit = "database" in data.get("mongo", {}) or "SWITCHBOARD_MONGO_DATABASE" in env
    sections["mongo"] = _mongo_database(sections["mongo"], explicit)
    cfg = Config(**sections, namespaces=namespaces, auth=auth, dev=dev)
    for name in SECTIONS:
        getattr(cfg, name).validate()
    for name, ns in namespaces.items():
        ns.validate(name)
    if not dev:
        _refuse_placeholders(cfg)
    cfg.auth.validate(dev)  # after the placeholders: the shipped config trips those first
    return cfg


def _mongo_database(mongo: MongoConfig, explicit: bool) -> MongoConfig:
    """A database named in the URL is used, unless `[mongo] database` names another one."""
    named = url_database(mongo.url)
    if not named or named == mongo.database:
        return mongo
    if explicit:
        raise ConfigError(
            f"mongo.database: {mongo.database!r}, but mongo.url names database {named!r}; "
            "name it in one place (or the same in both)"
        )
    return dataclasses.replace(mongo, database=named)


def _namespaces(table: Any, env: Mapping[str, str]) -> dict[str, NamespaceConfig]:
    _check("namespaces", isinstance(table, dict), "a table of namespace tables", table)
    result: dict[str, NamespaceConfig] = {}
    for name, ns_table in table.items():
        ok = name.replace("_", "").replace("-", "").isalnum()
        _check(f"namespaces.{name}", ok, "a name of letters, digits, _ and -", name)
        result[name] = _build(
            NamespaceConfig, f"namespaces.{name}", ns_table, env, f"SWITCHBOARD_NAMESPACES_{name}"
        )
    result.setdefault("default", NamespaceConfig())
    return result


def _auth(table: Any, env: Mapping[str, str]) -> AuthConfig:
    """`[auth]` with its provider sub-tables; env overrides as SWITCHBOARD_AUTH_GITHUB_CLIENT_ID."""
    _check("auth", isinstance(table, dict), "a table", table)
    subtables = {"github": GitHubConfig, "google": OidcConfig, "oidc": None, "dev": DevAuthConfig}
    allowed = {f.name for f in fields(_AuthScalars)} | set(subtables)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"auth.{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    flat = {k: v for k, v in table.items() if k not in subtables}
    base = _build(_AuthScalars, "auth", flat, env, "SWITCHBOARD_AUTH")
    parts: dict[str, Any] = {}
    for name, cls in subtables.items():
        if cls is not None:
            sub = table.get(name, {})
            if name == "google" and isinstance(sub, dict):
                sub = {"issuer": GOOGLE_ISSUER, **sub}
            parts[name] = _build(cls, f"auth.{name}", sub, env, f"SWITCHBOARD_AUTH_{name}")
    oidc = table.get("oidc", {})
    _check("auth.oidc", isinstance(oidc, dict), "a table of provider tables", oidc)
    parts["oidc"] = {}
    for name, sub in oidc.items():
        ok = name.replace("_", "").replace("-", "").isalnum() and name not in subtables
        _check(
            f"auth.oidc.{name}",
            ok,
            "a name of letters, digits, _ and - (not github, google or dev)",
            name,
        )
        parts["oidc"][name] = _build(
            OidcConfig, f"auth.oidc.{name}", sub, env, f"SWITCHBOARD_AUTH_OIDC_{name}"
        )
    return AuthConfig(
        session_ttl_s=base.session_ttl_s, admins=base.admins, base_url=base.base_url, **parts
    )


@dataclass(frozen=True, slots=True)
class _AuthScalars:
    """The plain keys of `[auth]`, read with the same rules as every other section."""

    session_ttl_s: float = SESSION_TTL_S
    admins: tuple[str, ...] = ()
    base_url: str = ""


def _refuse_placeholders(cfg: Config) -> None:
    for key, value, env_name in (
        ("security.secret", cfg.security.secret, "SWITCHBOARD_SECURITY_SECRET"),
        ("security.token_secret", cfg.security.token_secret, "SWITCHBOARD_SECURITY_TOKEN_SECRET"),
        ("api.key", cfg.api.key, "SWITCHBOARD_API_KEY"),
    ):
        if value.startswith(PLACEHOLDER_PREFIX):
            raise ConfigError(
                f"{key}: still the shipped placeholder; set a random value in config.toml or "
                f"{env_name} (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                ", or pass --dev for local development"
            )
