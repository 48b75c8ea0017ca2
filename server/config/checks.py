"""What a deployment outside --dev must not get wrong (docs/security.md): strong, distinct
secrets, a real database, public redirect URIs, --dev kept on loopback."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

from server.config.base import ConfigError
from server.config.schema import MIN_SECRET_BITS, Config


def _secrets(cfg: Config) -> tuple[tuple[str, str, str], ...]:
    return (
        ("security.secret", cfg.security.secret, "SWITCHBOARD_SECURITY_SECRET"),
        ("security.token_secret", cfg.security.token_secret, "SWITCHBOARD_SECURITY_TOKEN_SECRET"),
        ("api.key", cfg.api.key, "SWITCHBOARD_API_KEY"),
    )


def _refuse_placeholders(cfg: Config) -> None:
    for key, value, env_name in _secrets(cfg):
        if is_placeholder(value):
            raise ConfigError(
                f"{key}: still the shipped placeholder; set a random value in config.toml or "
                f"{env_name} (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                ", or pass --dev for local development"
            )


# -- hostile clients (docs/security.md): what a deployment outside --dev must not get wrong ----

NEW_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_placeholder(value: str) -> bool:
    """The shipped `change-me-...` values, in any case and with any separators."""
    squashed = "".join(c for c in value.lower() if c.isalnum())
    return "changeme" in squashed


def estimated_bits(value: str) -> float:
    """A conservative estimate of a secret's entropy in bits.

    Length times the smaller of two per-character Shannon entropies: of the characters (which
    catches "aaaa..." and small alphabets) and of the steps between neighbours (which catches
    "abcdefgh..." and "0123..."). Random output of `secrets.token_urlsafe(32)` scores about 200.
    """
    if len(value) < 2:
        return 0.0
    steps = [ord(b) - ord(a) for a, b in zip(value, value[1:], strict=False)]
    return len(value) * min(_shannon(list(value)), _shannon(steps))


def _shannon(items: Sequence[Hashable]) -> float:
    counts: dict[Hashable, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    n = len(items)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def check_dev_host(cfg: Config) -> None:
    """--dev signs anyone in as anyone and accepts placeholder secrets: loopback only."""
    if cfg.dev and not cfg.server.loopback_host:
        raise ConfigError(
            f"server.host: --dev serves only a loopback host (127.0.0.1, ::1 or localhost), "
            f"got {cfg.server.host!r}; drop --dev to serve other hosts"
        )


def check_deployment(cfg: Config) -> None:
    """Refusals that make a config safe to expose: strong distinct secrets, a real database,
    public redirect URIs for sign-in; and --dev kept on loopback."""
    check_dev_host(cfg)
    if cfg.security.secret == cfg.security.token_secret:
        raise ConfigError(
            "security.token_secret: must differ from security.secret (backends that mint "
            "tokens would otherwise hold the cookie key)"
        )
    if cfg.dev:
        return
    for key, value, env_name in _secrets(cfg):
        if estimated_bits(value) < MIN_SECRET_BITS:
            raise ConfigError(
                f"{key}: too guessable (under {MIN_SECRET_BITS} bits of estimated entropy); set "
                f"a random value in config.toml or {env_name} (e.g. `{NEW_SECRET}`)"
            )
    if not cfg.mongo.url:
        raise ConfigError(
            'mongo.url: set [mongo] url to your MongoDB, or url = "embedded" to run the '
            "embedded server"
        )
    auth = cfg.auth
    providers = [auth.github.enabled, auth.google.enabled, *(o.enabled for o in auth.oidc.values())]
    if not auth.base_url and any(providers):
        raise ConfigError(
            "auth.base_url: set the public URL of this server (e.g. https://chat.example.com) "
            "when a login provider is configured: redirect URIs must not come from the request"
        )
