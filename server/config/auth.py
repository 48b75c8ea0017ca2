"""`[auth]`: sign-in providers (GitHub, Google, any OpenID Connect issuer, the dev one),
sessions and admins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from server.config.base import ConfigError, _check


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
