"""The HTTP API for backends (publish, broadcast, history, presence, tokens, disconnect, stats)
and the unauthenticated health endpoints."""

from __future__ import annotations

from typing import Any

import tornado.web

from handlers.base import ApiHandler, JsonHandler
from server import admin, auth, openapi, protocol
from server.broker.base import BrokerUnavailable
from server.extras import Extras
from server.node import Node
from server.observe import directory, metrics, stats
from server.presence.stats import presence_stats
from server.protocol import Close, Code, ProtocolError

MAX_TOKEN_TTL_S = 30 * 24 * 3600
MAX_BROADCAST = 1000


class PublishHandler(ApiHandler):
    async def post(self) -> None:
        body = self.json_body()
        channel = protocol.check_channel(body.get("channel"))
        if "data" not in body:
            raise ProtocolError(Code.BAD_REQUEST, "`data` is required")
        ns = self.node.config.namespace_of(channel)
        pos = await self.node.publish(channel, body["data"], None, ns)
        self.send_json(pos.as_dict())


class BroadcastHandler(ApiHandler):
    async def post(self) -> None:
        body = self.json_body()
        channels = body.get("channels")
        if not isinstance(channels, list) or not 1 <= len(channels) <= MAX_BROADCAST:
            raise ProtocolError(
                Code.BAD_REQUEST, f"`channels` must be a list of 1 to {MAX_BROADCAST} channels"
            )
        if "data" not in body:
            raise ProtocolError(Code.BAD_REQUEST, "`data` is required")
        results: list[dict[str, Any]] = []
        for channel in channels:
            try:
                name = protocol.check_channel(channel)
                ns = self.node.config.namespace_of(name)
                pos = await self.node.publish(name, body["data"], None, ns)
                results.append(pos.as_dict())
            except ProtocolError as exc:
                results.append({"error": exc.as_dict()})
        self.send_json({"results": results})


class HistoryHandler(ApiHandler):
    async def get(self, channel: str) -> None:
        protocol.check_channel(channel)
        args: dict[str, Any] = {}
        for name in ("since", "limit"):
            raw = self.get_query_argument(name, None)
            if raw is not None:
                # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
                if not (raw.isascii() and raw.isdigit()) or int(raw) > openapi.MAX_OFFSET:
                    raise ProtocolError(Code.BAD_REQUEST, f"`{name}` must be an integer >= 0")
                args[name] = int(raw)
        order = self.get_query_argument("reverse", "false")
        if order not in ("true", "false"):
            raise ProtocolError(Code.BAD_REQUEST, "`reverse` must be true or false")
        args["reverse"] = order == "true"
        since, limit, reverse = protocol.history_args(args)
        ns = self.node.config.namespace_of(channel)
        self.send_json(await self.node.history(channel, since, limit, reverse, ns))


class PresenceHandler(ApiHandler):
    async def get(self, channel: str) -> None:
        protocol.check_channel(channel)
        ns = self.node.config.namespace_of(channel)
        self.send_json(await self.node.presence_of(channel, ns))


class PresenceStatsHandler(ApiHandler):
    async def get(self, channel: str) -> None:
        protocol.check_channel(channel)
        ns = self.node.config.namespace_of(channel)
        self.send_json(await presence_stats(self.node, channel, ns))


class ChannelsHandler(ApiHandler):
    """Channels with subscribers anywhere (server/observe/directory.py), for admins and backends."""

    async def get(self) -> None:
        query = self.get_query_argument("q", "")
        raw = self.get_query_argument("limit", str(directory.MAX_LISTED))
        if len(query) > 255 or not (raw.isascii() and raw.isdigit()):
            raise ProtocolError(Code.BAD_REQUEST, "`q` is up to 255 characters, `limit` 1-500")
        limit = int(raw)
        if not 1 <= limit <= directory.MAX_LISTED:
            raise ProtocolError(Code.BAD_REQUEST, "`limit` must be from 1 to 500")
        extras = self.node.extension
        if not isinstance(extras, Extras):
            raise ProtocolError(Code.UNAVAILABLE, "no channel directory in this process")
        self.send_json({"channels": await extras.directory.channels(query, limit)})


class UnsubscribeHandler(ApiHandler):
    async def post(self) -> None:
        body = self.json_body()
        user = body.get("user")
        if not isinstance(user, str) or not user:
            raise ProtocolError(Code.BAD_REQUEST, "`user` must be a non-empty string")
        channel = protocol.check_channel(body.get("channel"))
        try:
            n = await admin.unsubscribe_user(self.node, user, channel)
        except BrokerUnavailable as exc:
            raise ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}") from None
        self.send_json({"unsubscribed": n})


class TokenHandler(ApiHandler):
    def post(self) -> None:
        body = self.json_body()
        user, name, ttl = body.get("user"), body.get("name"), body.get("ttl_s", 3600)
        channels, info = body.get("channels"), body.get("info")
        if not isinstance(user, str) or not user:
            raise ProtocolError(Code.BAD_REQUEST, "`user` must be a non-empty string")
        if name is not None and not isinstance(name, str):
            raise ProtocolError(Code.BAD_REQUEST, "`name` must be a string")
        if type(ttl) not in (int, float) or not 0 < ttl <= MAX_TOKEN_TTL_S:
            raise ProtocolError(
                Code.BAD_REQUEST, f"`ttl_s` must be seconds from 1 to {MAX_TOKEN_TTL_S}"
            )
        if channels is not None:
            if not isinstance(channels, list):
                raise ProtocolError(Code.BAD_REQUEST, "`channels` must be a list")
            channels = [protocol.check_channel(c) for c in channels]
        if info is not None and not isinstance(info, dict):
            raise ProtocolError(Code.BAD_REQUEST, "`info` must be an object")
        token = auth.mint_token(
            self.node.config.security.token_secret, user, ttl, name, channels, info
        )
        self.send_json({"token": token})


class DisconnectHandler(ApiHandler):
    async def post(self) -> None:
        user = self.json_body().get("user")
        if not isinstance(user, str) or not user:
            raise ProtocolError(Code.BAD_REQUEST, "`user` must be a non-empty string")
        n = await self.node.disconnect_user(user, Close.UNAUTHORIZED, "disconnected by the server")
        self.send_json({"disconnected": n})


class StatsHandler(ApiHandler):
    async def get(self) -> None:
        processes = await self.node.cluster_stats()
        self.send_json({"processes": processes, "total": stats.totals(processes)})


class HealthHandler(JsonHandler):
    def get(self) -> None:
        self.send_json({"status": "ok", "node": self.node.id})


class ReadyHandler(JsonHandler):
    async def get(self) -> None:
        problems = await self.node.ready()
        self.send_json({"ready": not problems, "problems": problems}, 503 if problems else 200)


class OpenApiHandler(JsonHandler):
    """The OpenAPI 3.1 description of this API (server/openapi.py); public, like the docs."""

    def get(self) -> None:
        self.set_header("Cache-Control", "public, max-age=300")
        self.send_json(openapi.document())


class NotFoundHandler(JsonHandler):
    """Any path no route matches: a 404 in the API's error shape rather than Tornado's HTML."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)


class MetricsHandler(JsonHandler):
    """Prometheus text, or OpenMetrics when the scraper's Accept header asks for it.

    Open to the API key, to `Authorization: Bearer <[metrics] token>` and to `[metrics] open_to`.
    """

    def initialize(self, node: Node, metrics: metrics.Metrics) -> None:  # type: ignore[override]
        super().initialize(node)
        self.metrics = metrics

    def prepare(self) -> None:
        address = getattr(getattr(self.request.connection, "context", None), "address", None)
        peer = address[0] if isinstance(address, tuple) and address else None
        cfg = self.node.config
        auth_header = self.request.headers.get("Authorization", "")
        if not metrics.scrape_allowed(cfg.metrics, cfg.api.key, auth_header, peer):
            raise ProtocolError(
                Code.UNAUTHORIZED,
                "missing or wrong `Authorization: apikey KEY` or `Bearer [metrics] token`",
            )

    def get(self) -> None:
        body, content_type = self.metrics.expose(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.finish(body)
