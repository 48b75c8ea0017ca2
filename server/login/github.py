"""GitHub's OAuth 2 web flow: authorize, exchange the code (with PKCE), read /user.

GitHub has no ID token, so the identity is what its API says for the access token: the numeric
`id` is the subject (a login name can be renamed and reused by someone else).
"""

from __future__ import annotations

from urllib.parse import urlencode

from server.config import GitHubConfig
from server.login.base import ExternalIdentity, Provider, ProviderError, fetch_json
from server.login.flow import Flow


class GitHubProvider(Provider):
    name = "github"
    label = "GitHub"

    def __init__(self, config: GitHubConfig) -> None:
        self.config = config

    async def authorize_url(self, redirect_uri: str, flow: Flow) -> str:
        query = {
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": "read:user",
            "state": flow.state,
            "allow_signup": "true",
            "code_challenge": flow.challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.config.authorize_url}?{urlencode(query)}"

    async def identify(self, code: str, redirect_uri: str, flow: Flow) -> ExternalIdentity:
        token = await fetch_json(
            self.label,
            self.config.token_url,
            form={
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret,
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": flow.verifier,
            },
        )
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            # GitHub answers a bad or used code with 200 and {"error": ...}.
            raise ProviderError(f"GitHub refused the sign-in ({token.get('error', 'no token')}).")
        user = await fetch_json(
            self.label,
            self.config.api_url.rstrip("/") + "/user",
            headers={"Authorization": f"Bearer {access}", "Accept": "application/vnd.github+json"},
        )
        uid, login = user.get("id"), user.get("login")
        if type(uid) is not int or not isinstance(login, str):
            raise ProviderError("GitHub sent a user without an id.")
        given = user.get("name")
        name = given if isinstance(given, str) and given else login
        avatar = user.get("avatar_url") if isinstance(user.get("avatar_url"), str) else None
        return ExternalIdentity(str(uid), name, avatar)
