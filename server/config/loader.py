"""Reading config.toml and SWITCHBOARD_<SECTION>_<KEY> variables into the schema.

A misspelt key or variable, a wrong type or an impossible value is one ConfigError line.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

from server.config.auth import (
    GOOGLE_ISSUER,
    SESSION_TTL_S,
    AuthConfig,
    DevAuthConfig,
    GitHubConfig,
    OidcConfig,
)
from server.config.base import ConfigError, _check
from server.config.checks import _refuse_placeholders, check_deployment
from server.config.schema import SECTIONS, Config, MongoConfig, NamespaceConfig, url_database

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
    check_deployment(cfg)
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
