"""The HTTP API for backends (docs/protocol.md): publish, broadcast, history, presence,
tokens, disconnect, stats, authenticated with `Authorization: apikey <key>`.

    api = ServerAPI("http://127.0.0.1:8000", api_key="...")
    await api.publish("news", {"title": "..."})        # {"offset": N, "epoch": "E"}
    token = await api.tokens("42", name="Ada", ttl_s=3600)

A refusal raises SwitchboardError with the server's code and the HTTP status; an unreachable
server raises it with code `unavailable`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import orjson
import tornado.httpclient

from switchboard_client.errors import SwitchboardError
from switchboard_client.types import HistoryResult, PresenceResult, PublishResult


class ServerAPI:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"apikey {api_key}", "Content-Type": "application/json"}
        self._timeout = timeout

    async def publish(self, channel: str, data: Any) -> PublishResult:
        result: PublishResult = await self._post("/api/publish", {"channel": channel, "data": data})
        return result

    async def broadcast(self, channels: list[str], data: Any) -> list[dict[str, Any]]:
        """Publish to each channel; one {offset, epoch} or {error} per channel, in order."""
        body = await self._post("/api/broadcast", {"channels": channels, "data": data})
        results: list[dict[str, Any]] = body["results"]
        return results

    async def history(
        self,
        channel: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        reverse: bool | None = None,
    ) -> HistoryResult:
        query: dict[str, Any] = {}
        if since is not None:
            query["since"] = since
        if limit is not None:
            query["limit"] = limit
        if reverse is not None:
            query["reverse"] = "true" if reverse else "false"
        path = f"/api/channels/{quote(channel, safe='')}/history"
        result: HistoryResult = await self._get(path + ("?" + urlencode(query) if query else ""))
        return result

    async def presence(self, channel: str) -> PresenceResult:
        result: PresenceResult = await self._get(
            f"/api/channels/{quote(channel, safe='')}/presence"
        )
        return result

    async def tokens(
        self,
        user: str,
        *,
        name: str | None = None,
        ttl_s: float | None = None,
        channels: list[str] | None = None,
        info: dict[str, Any] | None = None,
    ) -> str:
        """Mint a connection token (JWT) for `user`; returns the token."""
        body: dict[str, Any] = {"user": user}
        for key, value in (
            ("name", name),
            ("ttl_s", ttl_s),
            ("channels", channels),
            ("info", info),
        ):
            if value is not None:
                body[key] = value
        token: str = (await self._post("/api/tokens", body))["token"]
        return token

    async def disconnect(self, user: str) -> int:
        """Disconnect every connection of `user`; returns how many there were."""
        count: int = (await self._post("/api/disconnect", {"user": user}))["disconnected"]
        return count

    async def stats(self) -> dict[str, Any]:
        """Connections, subscriptions, channels, messages: per process and in total."""
        result: dict[str, Any] = await self._get("/api/stats")
        return result

    async def _get(self, path: str) -> Any:
        return await self._fetch("GET", path, None)

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._fetch("POST", path, orjson.dumps(body))

    async def _fetch(self, method: str, path: str, body: bytes | None) -> Any:
        request = tornado.httpclient.HTTPRequest(
            self.base_url + path,
            method=method,
            body=body,
            headers=self._headers,
            request_timeout=self._timeout,
        )
        try:
            response = await tornado.httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as exc:
            raise SwitchboardError("unavailable", f"{self.base_url} unreachable: {exc}") from None
        except tornado.httpclient.HTTPClientError as exc:  # no response: closed, timed out
            raise SwitchboardError("unavailable", f"{self.base_url}: {exc}", status=None) from None
        try:
            decoded = orjson.loads(response.body or b"null")
        except orjson.JSONDecodeError:
            decoded = None
        if response.code == 200:
            return decoded
        error = decoded.get("error") if isinstance(decoded, dict) else None
        if isinstance(error, dict):
            raise SwitchboardError(
                str(error.get("code")), str(error.get("message")), status=response.code
            )
        raise SwitchboardError(
            "unavailable" if response.code >= 500 else "bad_request",
            f"HTTP {response.code} {response.reason}",
            status=response.code,
        )
