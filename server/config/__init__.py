"""Settings: the schema (typed, frozen sections), the loader (TOML and environment) and the
checks a deployment must pass. Import from here."""

from __future__ import annotations

from server.config.auth import (
    GOOGLE_ISSUER,
    SESSION_TTL_S,
    AuthConfig,
    DevAuthConfig,
    GitHubConfig,
    OidcConfig,
)
from server.config.base import ConfigError
from server.config.checks import check_deployment, check_dev_host, estimated_bits, is_placeholder
from server.config.loader import ENV_PREFIX, from_dict, load
from server.config.schema import (
    EMBEDDED,
    MIN_SECRET_BITS,
    PLACEHOLDER_PREFIX,
    PUBLISH_MODES,
    SECTIONS,
    SECURE_COOKIES,
    ApiConfig,
    Config,
    LimitsConfig,
    MetricsConfig,
    MongoConfig,
    NamespaceConfig,
    RedisConfig,
    SecurityConfig,
    ServerConfig,
    WebhooksConfig,
    url_database,
)

__all__ = [
    "ApiConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "DevAuthConfig",
    "EMBEDDED",
    "ENV_PREFIX",
    "GOOGLE_ISSUER",
    "GitHubConfig",
    "LimitsConfig",
    "MIN_SECRET_BITS",
    "MetricsConfig",
    "MongoConfig",
    "NamespaceConfig",
    "OidcConfig",
    "PLACEHOLDER_PREFIX",
    "PUBLISH_MODES",
    "RedisConfig",
    "SECTIONS",
    "SECURE_COOKIES",
    "SESSION_TTL_S",
    "SecurityConfig",
    "ServerConfig",
    "WebhooksConfig",
    "check_deployment",
    "check_dev_host",
    "estimated_bits",
    "from_dict",
    "is_placeholder",
    "load",
    "url_database",
]
