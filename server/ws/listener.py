"""An HTTPServer whose plain WebSocket upgrades skip Tornado's HTTP machinery.

Why: a connection set up through Tornado builds an HTTP1Connection, a request with its headers,
a RequestHandler and a WebSocketHandler with its protocol object, and runs a coroutine through
routing, the handshake and the 101 response: about 300 µs of CPU per connection on this project's
machine, most of the cost of connecting. Here the first bytes of a new connection are peeked at
(`MSG_PEEK`: nothing is consumed): a complete upgrade request for a path listed in `upgrades`,
which its Endpoint admits, is answered right here and the socket goes to a WebSocket
(server/ws/websocket.py). Anything else, a refusal included, goes to Tornado untouched, which
reads the same bytes and serves them as it always has.

The 101 response and the connection's first frame (a hello) leave in one write.
Accepting stays Tornado's: it takes every waiting connection per readable event (up to its
backlog), and each costs one `recv` with MSG_PEEK here before the real one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol

import tornado.httpserver
from tornado.ioloop import PeriodicCallback
from tornado.iostream import IOStream

from server.ws import handshake
from server.ws.handshake import Request
from server.ws.outbox import Flusher
from server.ws.transport import Peer
from server.ws.websocket import WebSocket

access = logging.getLogger("tornado.access")

#: A connection that sent no complete request head in this long is closed, as Tornado does
#: with idle connections.
IDLE_S = 3600.0
#: How often connections still waiting for their first bytes are checked for that limit.
SWEEP_S = 10.0


class Endpoint(Protocol):
    """A WebSocket path served without Tornado's handler: what to check, what to open."""

    flusher: Flusher
    max_message_bytes: int
    max_pending_bytes: int

    def admit(self, req: Request) -> object | None:
        """What to open the connection with, or None to leave the request to Tornado's handler
        (which refuses it, or serves what this path does not: sessions, subprotocols)."""

    def open(self, ws: WebSocket, admitted: Any) -> Peer:
        """The connection is up (the 101 is queued): attach what speaks on it."""


class UpgradeServer(tornado.httpserver.HTTPServer):
    """tornado.httpserver.HTTPServer, plus `upgrades`: path -> Endpoint served directly."""

    def initialize(
        self, *args: Any, upgrades: Mapping[str, Endpoint] | None = None, **kwargs: Any
    ) -> None:
        super().initialize(*args, **kwargs)
        self._upgrades = dict(upgrades or {})
        self._xheaders = bool(kwargs.get("xheaders"))
        #: Connections waiting for their request head: fd -> (stream, address, deadline).
        self._waiting: dict[int, tuple[IOStream, Any, float]] = {}
        self._sweeper: PeriodicCallback | None = None

    def handle_stream(self, stream: IOStream, address: Any) -> None:
        if not self._upgrades or type(stream) is not IOStream:
            super().handle_stream(stream, address)
            return
        sock = stream.socket
        fd = sock.fileno()
        self._waiting[fd] = (stream, address, time.monotonic() + IDLE_S)
        asyncio.get_running_loop().add_reader(fd, self._first_bytes, fd)
        if self._sweeper is None:
            self._sweeper = PeriodicCallback(self._sweep, SWEEP_S * 1000)
            self._sweeper.start()

    def _first_bytes(self, fd: int) -> None:
        entry = self._waiting.pop(fd, None)
        loop = asyncio.get_running_loop()
        if entry is None:
            loop.remove_reader(fd)
            return
        stream, address, _ = entry
        sock = stream.socket
        try:
            data = sock.recv(handshake.MAX_HEAD, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            self._waiting[fd] = entry
            return
        except OSError:
            data = b""
        req = Request.parse(data) if data else None
        endpoint = self._upgrades.get(req.path) if req is not None else None
        admitted = None
        if req is not None and endpoint is not None and handshake.upgradable(req):
            admitted = endpoint.admit(req)
        if req is None or endpoint is None or admitted is None:
            loop.remove_reader(fd)
            super().handle_stream(stream, address)  # Tornado reads the same bytes
            return
        started = time.perf_counter()
        sock.recv(req.size)  # the head only: frames sent behind it are read by the WebSocket
        # Nagle's algorithm stays on: see server/ws/outbox.py.
        ws = WebSocket(
            sock, loop, endpoint.flusher, endpoint.max_message_bytes, endpoint.max_pending_bytes
        )
        ws.send(handshake.response(req))
        ws.start(endpoint.open(ws, admitted))  # replaces this reader: no epoll call
        if access.isEnabledFor(logging.INFO):
            self._log(req, address, time.perf_counter() - started)

    def _log(self, req: Request, address: Any, seconds: float) -> None:
        """The access log line Tornado writes for a 101 (server.logs.access_log's shape)."""
        ip = address[0] if isinstance(address, tuple) else str(address)
        if self._xheaders:
            forwarded = req.headers.get("x-forwarded-for", "").split(",")[-1].strip()
            ip = req.headers.get("x-real-ip") or forwarded or ip
        access.info(
            "%d %s %s %.2fms",
            101,
            "GET",
            req.path,
            1000.0 * seconds,
            extra={"status": 101, "remote_ip": ip},
        )

    def _sweep(self) -> None:
        now = time.monotonic()
        expired = [fd for fd, (_, _, deadline) in self._waiting.items() if deadline <= now]
        for fd in expired:
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        entry = self._waiting.pop(fd, None)
        if entry is not None:
            asyncio.get_running_loop().remove_reader(fd)
            entry[0].socket.close()

    async def close_all_connections(self) -> None:
        for fd in list(self._waiting):
            self._drop(fd)
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        await super().close_all_connections()
