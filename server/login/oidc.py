"""OpenID Connect by issuer URL: discovery, authorization code flow with PKCE, ID token checks.

The ID token is the proof of who signed in, so it is verified here rather than trusted because it
came over TLS: signed by one of the issuer's published keys (JWKS) with an asymmetric algorithm
the issuer announces (`none` and HMAC are refused: an HMAC "signature" would use our own client
secret as the key), issued by this issuer, for this client (`aud`, and `azp` when there are
several audiences), not expired, and carrying the nonce of this browser's flow.
"""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import quote, urlencode

import jwt

from server.config import OidcConfig
from server.login.base import ExternalIdentity, Provider, ProviderError, fetch_json
from server.login.flow import Flow

METADATA_TTL_S = 3600.0
JWKS_REFETCH_MIN_S = 60.0  # an unknown `kid` refetches the JWKS at most this often
LEEWAY_S = 60
ASYMMETRIC_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
SCOPES = "openid profile email"


class OidcProvider(Provider):
    def __init__(
        self, name: str, label: str, config: OidcConfig, extra_issuers: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.label = label
        self.config = config
        self.issuers = (config.issuer, *extra_issuers)
        self._meta: dict[str, Any] | None = None
        self._meta_at = 0.0
        self._jwks: list[dict[str, Any]] = []
        self._jwks_at = float("-inf")

    async def _metadata(self) -> dict[str, Any]:
        """The issuer's discovery document, cached for an hour."""
        if self._meta is not None and time.monotonic() - self._meta_at < METADATA_TTL_S:
            return self._meta
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = await fetch_json(self.label, url)
        if doc.get("issuer") != self.config.issuer:
            raise ProviderError(f"{self.label}'s discovery document names another issuer.")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(key)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise ProviderError(f"{self.label}'s discovery document has no {key}.")
        self._meta, self._meta_at = doc, time.monotonic()
        return doc

    async def authorize_url(self, redirect_uri: str, flow: Flow) -> str:
        endpoint = (await self._metadata())["authorization_endpoint"]
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPES,
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": flow.challenge,
            "code_challenge_method": "S256",
        }
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    async def identify(self, code: str, redirect_uri: str, flow: Flow) -> ExternalIdentity:
        meta = await self._metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": flow.verifier,
        }
        auth: tuple[str, str] | None = None
        if "client_secret_basic" in meta.get(
            "token_endpoint_auth_methods_supported", ["client_secret_basic"]
        ):
            # RFC 6749 2.3.1: both parts are form-encoded before Basic encoding.
            auth = (
                quote(self.config.client_id, safe=""),
                quote(self.config.client_secret, safe=""),
            )
        else:
            form |= {"client_id": self.config.client_id, "client_secret": self.config.client_secret}
        token = await fetch_json(self.label, meta["token_endpoint"], form=form, auth=auth)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderError(f"{self.label} sent no ID token.")
        claims = await self.verify_id_token(id_token, flow.nonce)
        if not isinstance(claims.get("name"), str) and isinstance(token.get("access_token"), str):
            claims = await self._with_userinfo(claims, meta, token["access_token"])
        name = next(
            (
                claims[k]
                for k in ("name", "preferred_username", "email")
                if isinstance(claims.get(k), str) and claims[k]
            ),
            claims["sub"],
        )
        avatar = claims.get("picture") if isinstance(claims.get("picture"), str) else None
        return ExternalIdentity(claims["sub"], name, avatar)

    async def _with_userinfo(
        self, claims: dict[str, Any], meta: dict[str, Any], access_token: str
    ) -> dict[str, Any]:
        """Fill in the display name from userinfo, only when it is about the same subject."""
        url = meta.get("userinfo_endpoint")
        if not isinstance(url, str):
            return claims
        info = await fetch_json(
            self.label, url, headers={"Authorization": f"Bearer {access_token}"}
        )
        if info.get("sub") != claims["sub"]:
            return claims
        return {**info, **claims, "name": info.get("name", claims.get("name"))}

    async def verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        meta = await self._metadata()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise ProviderError(f"{self.label} sent an ID token that is not a JWT.") from None
        alg = header.get("alg")
        announced = meta.get("id_token_signing_alg_values_supported", ["RS256"])
        if alg not in ASYMMETRIC_ALGS or alg not in announced:
            raise ProviderError(
                f"{self.label}'s ID token is signed with {alg!r}, which is not accepted."
            )
        key = await self._key(header.get("kid"), alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.config.client_id,
                issuer=self.issuers,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise ProviderError(f"{self.label}'s ID token has expired.") from None
        except jwt.PyJWTError as exc:
            raise ProviderError(f"{self.label}'s ID token was refused: {exc}.") from None
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.config.client_id:
            raise ProviderError(f"{self.label}'s ID token was issued to another client.")
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise ProviderError(f"{self.label}'s ID token belongs to another sign-in (nonce).")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise ProviderError(f"{self.label}'s ID token has no subject.")
        return claims

    async def _key(self, kid: Any, alg: str) -> jwt.PyJWK:
        """The issuer's key for `kid` that fits `alg`; refetches the JWKS when keys rotated."""
        key = self._pick(kid, alg)
        if key is None and time.monotonic() - self._jwks_at >= JWKS_REFETCH_MIN_S:
            jwks = await fetch_json(self.label, (await self._metadata())["jwks_uri"])
            keys = jwks.get("keys")
            self._jwks = [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []
            self._jwks_at = time.monotonic()
            key = self._pick(kid, alg)
        if key is None:
            raise ProviderError(f"{self.label}'s ID token is signed by a key it does not publish.")
        return key

    def _pick(self, kid: Any, alg: str) -> jwt.PyJWK | None:
        fitting: list[jwt.PyJWK] = []
        for jwk in self._jwks:
            if jwk.get("use", "sig") != "sig" or jwk.get("alg", alg) != alg:
                continue
            if kid is not None and jwk.get("kid") != kid:
                continue
            try:
                fitting.append(jwt.PyJWK(jwk, algorithm=alg))
            except jwt.PyJWTError:
                continue
        # Without a `kid` the choice is only safe when it is unambiguous.
        return fitting[0] if len(fitting) == 1 else None
