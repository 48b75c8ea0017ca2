"""The login service of one process: the configured providers and the path every flow takes.

begin: a fresh Flow (state, nonce, PKCE verifier) and the provider's authorize URL.
finish: the flow from the browser's cookie must match the callback's provider and state, not be
expired and not be used before; only then is a provider error reported or the code exchanged, and
only a verified identity is upserted. Nothing here creates a session: the caller does, after
finish returned a user, so every failure leaves the browser signed out.
"""

from __future__ import annotations

from collections.abc import Mapping

from server.config import GOOGLE_ISSUER, Config
from server.login.base import (
    DeniedError,
    LoginError,
    Provider,
    ProviderError,
    StateError,
    StoreDown,
)
from server.login.dev import DevProvider
from server.login.flow import Flow, UsedStates
from server.login.github import GitHubProvider
from server.login.oidc import OidcProvider
from server.store.base import Store, StoreUnavailable, User

MAX_ERROR_CHARS = 100


class UnknownProvider(LoginError):
    status = 404


def build_providers(config: Config) -> dict[str, Provider]:
    """The configured providers, in the order their buttons appear."""
    auth = config.auth
    providers: dict[str, Provider] = {}
    if auth.github.enabled:
        providers["github"] = GitHubProvider(auth.github)
    if auth.google.enabled:
        # Google's ID tokens name their issuer with or without the scheme.
        bare = ("accounts.google.com",) if auth.google.issuer == GOOGLE_ISSUER else ()
        providers["google"] = OidcProvider(
            "google", auth.google.label or "Google", auth.google, bare
        )
    for name, oidc in auth.oidc.items():
        if oidc.enabled:
            providers[name] = OidcProvider(name, oidc.label or name, oidc)
    if auth.dev.enabled and config.dev:
        providers["dev"] = DevProvider(config.security.secret)
    return providers


class Login:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.providers = build_providers(config)
        self._used = UsedStates()

    def buttons(self) -> list[tuple[str, str]]:
        """(name, label) of every configured provider."""
        return [(p.name, p.label) for p in self.providers.values()]

    def provider(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise UnknownProvider(f"There is no sign-in provider called {name[:40]!r} here.")
        return provider

    def redirect_uri(self, name: str, protocol: str, host: str) -> str:
        base = self.config.auth.base_url.rstrip("/") or f"{protocol}://{host}"
        return f"{base}/login/{name}/callback"

    def is_admin(self, user: User) -> bool:
        return f"{user.provider}:{user.subject}" in self.config.auth.admins

    async def begin(self, name: str, redirect_uri: str) -> tuple[Flow, str]:
        provider = self.provider(name)
        flow = Flow.start(name)
        return flow, await provider.authorize_url(redirect_uri, flow)

    async def finish(
        self, name: str, flow: Flow | None, args: Mapping[str, str], redirect_uri: str
    ) -> User:
        provider = self.provider(name)
        if flow is None:
            raise StateError(
                "This sign-in was not started in this browser, or it took too "
                "long. Please start again."
            )
        if not flow.matches(name, args.get("state")):
            raise StateError(
                "This sign-in does not belong to this browser or has expired. Please start again."
            )
        if not self._used.consume(flow):
            raise StateError("This sign-in was already used. Please start again.")
        error = args.get("error")
        if error == "access_denied":
            raise DeniedError(f"Sign-in with {provider.label} was cancelled or refused.")
        if error:
            raise ProviderError(
                f"{provider.label} could not sign you in ({error[:MAX_ERROR_CHARS]})."
            )
        code = args.get("code")
        if not code:
            raise ProviderError(f"{provider.label} sent no authorization code.")
        found = await provider.identify(code, redirect_uri, flow)
        try:
            return await self.store.upsert_user(name, found.subject, found.name, found.avatar)
        except StoreUnavailable:
            raise StoreDown() from None
