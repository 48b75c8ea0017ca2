"""The composition root: builds the node's parts from config and maps URLs to handlers.

The one module in server/ that imports handlers/.
"""

from __future__ import annotations

import logging
from typing import Any

import tornado.httpserver
import tornado.web

from handlers import api, login, pages, site, sse, ws
from server import assets
from server.broker import redis_conn
from server.broker.base import Broker
from server.broker.memory import MemoryBroker
from server.broker.redis import RedisBroker
from server.client import Connection
from server.codec import Transcoder
from server.config import Config
from server.extras import Extras
from server.hub import Hub
from server.keepalive import KeepAlive
from server.login.service import Login
from server.node import Node
from server.observe import metrics
from server.observe.looplag import LoopLag
from server.observe.statsfeed import StatsFeed
from server.presence.base import Presence
from server.presence.memory import MemoryPresence
from server.presence.redis import RedisPresence
from server.process import logs
from server.process.admission import Admission, default_max_sockets
from server.process.httpserver import GuardedHTTPServer
from server.sse.registry import Sessions
from server.store.base import Store
from server.store.memory import MemoryStore
from server.store.mongo import MongoStore
from server.ws.outbox import Flusher


def build_broker(config: Config) -> tuple[Broker, Presence]:
    """The broker and presence for `[redis] url`: in-memory ones when it is empty; with
    `[redis] cluster`, over a Redis Cluster that `url` is one node of."""
    rc = config.redis
    if not rc.url:
        return MemoryBroker(), MemoryPresence()
    client = redis_conn.cluster_client(rc.url) if rc.cluster else redis_conn.client(rc.url)
    # One client: the broker owns it (and closes it); presence borrows it.
    return (
        RedisBroker(client, rc.prefix, rc.presence_ttl_s, rc.sharded),
        RedisPresence(client, rc.prefix, rc.presence_ttl_s),
    )


def build_store(config: Config) -> Store:
    """The store for `[mongo] url`: MongoDB for a mongodb:// URL, in-memory for `memory:`.

    An empty url asks for the embedded server, which prepare_services starts and puts in the
    config before any node is built; a node built without it (tests, embedding) keeps its
    state in memory.
    """
    if config.mongo.url.startswith("mongodb"):
        return MongoStore(config.mongo)
    return MemoryStore()


def build_node(config: Config) -> Node:
    broker, presence = build_broker(config)
    hub = Hub[Connection](config.server.max_pending_bytes)
    node = Node(config, hub, broker, build_store(config), presence)
    node.extension = Extras(node)
    return node


#: The application setting that lists the endpoints make_server upgrades directly.
UPGRADES = "websocket_upgrades"
#: Room in an HTTP API body beyond one publication: a broadcast's list of 1,000 channels.
BODY_OVERHEAD = 512 * 1024


def make_server(app: tornado.web.Application, config: Config) -> GuardedHTTPServer:
    """The HTTP server: admission control, timeouts, proxy headers only from trusted proxies,
    request bodies capped near one publication (server/process/httpserver.py); plain WebSocket
    upgrades, once admitted, answered without Tornado's handler (server/ws/listener.py)."""
    sc = config.server
    admission = Admission(config.limits, sc.max_sockets or default_max_sockets())
    return GuardedHTTPServer(
        app,
        admission=admission,
        trusted_proxies=sc.trusted_proxies,
        idle_connection_timeout=sc.idle_timeout_s,
        body_timeout=sc.body_timeout_s,
        max_body_size=sc.max_message_bytes + BODY_OVERHEAD,
        upgrades=app.settings.get(UPGRADES, {}),
    )


def make_app(node: Node) -> tornado.web.Application:
    config = node.config
    node_metrics = metrics.Metrics(node)
    node.attach(node_metrics)
    node.attach(StatsFeed(node))
    node.attach(KeepAlive(node.hub.clients, config.server.ping_interval_s))
    node.attach(LoopLag(node.stats))
    n = {"node": node}
    endpoint = ws.Endpoint(node, Flusher(config.server.write_delay_ms / 1000), Transcoder())
    upgrades: dict[str, Any] = {UPGRADES: {"/ws": endpoint}}
    nl = {**n, "login": Login(config, node.store)}
    channel = r"/api/channels/([^/]+)"
    return tornado.web.Application(
        [
            (r"/", site.HomeHandler, nl),
            (r"/channels/([^/]+)", site.ChannelHandler, nl),
            (r"/admin", site.AdminHandler, nl),
            (r"/admin/token", site.AdminTokenHandler, nl),
            (r"/admin/channels", site.AdminChannelsHandler, nl),
            (r"/admin/channels/([^/]+)", site.AdminChannelHandler, nl),
            (r"/login", login.LoginPageHandler, nl),
            (r"/login/dev/authorize", login.DevAuthorizeHandler, nl),
            (r"/login/([A-Za-z0-9_-]+)", login.StartHandler, nl),
            (r"/login/([A-Za-z0-9_-]+)/callback", login.CallbackHandler, nl),
            (r"/logout", login.LogoutHandler, nl),
            (r"/ws", ws.WebSocketHandler, {"endpoint": endpoint}),
            (r"/sse", sse.EventStreamHandler, {**n, "sessions": Sessions(node)}),
            (r"/api/publish", api.PublishHandler, n),
            (r"/api/broadcast", api.BroadcastHandler, n),
            (channel + "/history", api.HistoryHandler, n),
            (channel + "/presence", api.PresenceHandler, n),
            (channel + "/presence_stats", api.PresenceStatsHandler, n),
            (r"/api/channels", api.ChannelsHandler, n),
            (r"/api/unsubscribe", api.UnsubscribeHandler, n),
            (r"/api/tokens", api.TokenHandler, n),
            (r"/api/disconnect", api.DisconnectHandler, n),
            (r"/api/stats", api.StatsHandler, n),
            (r"/healthz", api.HealthHandler, n),
            (r"/readyz", api.ReadyHandler, n),
            (r"/metrics", api.MetricsHandler, {**n, "metrics": node_metrics}),
            (r"/api/openapi.json", api.OpenApiHandler, n),
        ],
        default_handler_class=site.NotFoundHandler,
        default_handler_args=nl,
        static_handler_class=site.StaticFiles,
        template_path=str(assets.TEMPLATES),
        static_path=str(assets.STATIC),
        cookie_secret=config.security.secret,
        # Every POST must carry the _xsrf form field matching its cookie, except the HTTP API,
        # which authenticates with an API key rather than cookies (ApiHandler opts out).
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Lax"},  # Secure: PageHandler
        csp=pages.content_security_policy(config),
        websocket_max_message_size=config.server.max_message_bytes,
        compress_response=False,
        log_function=logs.access_log,
        log_throttle=logs.Throttle(logging.getLogger("tornado.access")),
        debug=False,
        **upgrades,
    )
