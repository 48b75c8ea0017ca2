"""An HTTPServer whose plain WebSocket upgrades skip Tornado's HTTP machinery.

Why: a connection set up through Tornado builds an HTTP1Connection, a request with its headers,
a RequestHandler and a WebSocketHandler with its protocol object, and runs a coroutine through
routing, the handshake and the 101 response: about 300 µs of CPU per connection on this project's
machine, most of the cost of connecting. Here the first bytes of a new connection are peeked at
(`MSG_PEEK`: nothing is consumed): a complete upgrade request for a path listed in `upgrades`,
which its Endpoint admits, is answered right here and the socket goes to a WebSocket
(server/ws/websocket.py). Anything else, a refusal included, goes to Tornado untouched, which
reads the same bytes and serves them as it always has.

The 101 response (naming the subprotocol the endpoint chose among those offered, as Tornado's
handler would) and the connection's first frame (a hello) leave in one write.
Accepting stays the HTTP server's (a subclass may admit connections under limits:
server/process/httpserver.py, and hands over the bare socket: Tornado's IOStream is only made
for what goes to Tornado). The head is peeked at straight after the accept, where on loopback
it has often arrived; otherwise a reader waits for it. Each connection costs one `recv` with
MSG_PEEK here before the real one. A connection that sends no complete request head within
the server's `idle_connection_timeout` is closed, as Tornado closes one whose head does not come
in time; once the server is stopped (draining), every request is left to Tornado.
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
from server.ws.transport import TransportOwner
from server.ws.websocket import WebSocket

access = logging.getLogger("tornado.access")
_Waiting = tuple[socket.socket, IOStream | None, Any, float]

#: How often, at most, connections still waiting for their first bytes are checked for the
#: idle timeout (a quarter of the timeout when that is shorter).
SWEEP_S = 10.0


class Endpoint(Protocol):
    """A WebSocket path served without Tornado's handler: what to check, what to open."""

    flusher: Flusher
    max_message_bytes: int
    max_pending_bytes: int

    def admit(self, req: Request) -> object | None:
        """What to open the connection with, or None to leave the request to Tornado's handler
        (which refuses it, or serves what this path does not: sessions)."""

    def select_subprotocol(self, offered: list[str]) -> str | None:
        """One of the subprotocols the client offered, or None (Tornado's handler's hook)."""

    def open(self, ws: WebSocket, admitted: Any, subprotocol: str | None) -> TransportOwner:
        """The connection is up (the 101 is queued): attach what speaks on it."""


class UpgradeServer(tornado.httpserver.HTTPServer):
    """tornado.httpserver.HTTPServer, plus `upgrades`: path -> Endpoint served directly."""

    def initialize(
        self, *args: Any, upgrades: Mapping[str, Endpoint] | None = None, **kwargs: Any
    ) -> None:
        super().initialize(*args, **kwargs)
        self._upgrades = dict(upgrades or {})
        self._xheaders = bool(kwargs.get("xheaders"))
        self._idle_s: float = self.conn_params.header_timeout or 3600.0
        #: Accepted sockets whose first bytes have not come yet, by fd: (socket, stream,
        #: address, deadline); the stream is made only for what goes to Tornado.
        self._waiting: dict[int, _Waiting] = {}
        self._idle_sweeper: PeriodicCallback | None = None

    def handle_stream(self, stream: IOStream, address: Any) -> None:
        if not self._upgrades or type(stream) is not IOStream:
            super().handle_stream(stream, address)
            return
        self._start(stream.socket, stream, address)

    def handle_socket(self, sock: socket.socket, address: Any) -> None:
        """A socket just accepted (by a subclass's own accept handler): like `handle_stream`,
        but the IOStream is only made if the connection goes to Tornado."""
        sock.setblocking(False)  # as IOStream would
        if not self._upgrades:
            self._to_tornado(sock, None, address)
            return
        self._start(sock, None, address)

    def _start(self, sock: socket.socket, stream: IOStream | None, address: Any) -> None:
        entry = (sock, stream, address, time.monotonic() + self._idle_s)
        if self._serve(entry, watched=False):
            return  # the head had come with the connection: no reader, no epoll call for it
        fd = sock.fileno()
        self._waiting[fd] = entry
        asyncio.get_running_loop().add_reader(fd, self._first_bytes, fd)
        if self._idle_sweeper is None:
            every_s = min(SWEEP_S, self._idle_s / 4)
            self._idle_sweeper = PeriodicCallback(self._sweep, every_s * 1000)
            self._idle_sweeper.start()

    def _first_bytes(self, fd: int) -> None:
        entry = self._waiting.pop(fd, None)
        if entry is None:
            asyncio.get_running_loop().remove_reader(fd)
            return
        if not self._serve(entry, watched=True):
            self._waiting[fd] = entry

    def _serve(self, entry: _Waiting, watched: bool) -> bool:
        """Serve the connection from the bytes it has sent, or False if none have come yet.

        `watched`: a reader waits on the socket (the upgraded WebSocket's replaces it).
        """
        sock, stream, address, _ = entry
        loop = asyncio.get_running_loop()
        try:
            data = sock.recv(handshake.MAX_HEAD, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        req = Request.parse(data) if data else None
        endpoint = self._upgrades.get(req.path) if req is not None else None
        admitted = ip = None
        if req is not None and endpoint is not None and handshake.upgradable(req):
            if not self._stopped:
                admitted = endpoint.admit(req)
            if admitted is not None:
                ip = self.upgrade_address(sock, address, req)
        if req is None or endpoint is None or admitted is None or ip is None:
            if watched:
                loop.remove_reader(sock.fileno())
            self._to_tornado(sock, stream, address)  # Tornado reads the same bytes
            return True
        started = time.perf_counter()
        sock.recv(req.size)  # the head only: frames sent behind it are read by the WebSocket
        offered = handshake.subprotocols(req)
        chosen = endpoint.select_subprotocol(offered) if offered else None
        # Nagle's algorithm stays on: see server/ws/outbox.py.
        ws = WebSocket(
            sock, loop, endpoint.flusher, endpoint.max_message_bytes, endpoint.max_pending_bytes
        )
        ws.send(handshake.response(req, chosen))
        ws.start(endpoint.open(ws, admitted, chosen))  # a watching reader is replaced in place
        if access.isEnabledFor(logging.INFO):
            self._log(req, ip, time.perf_counter() - started)
        return True

    def _to_tornado(self, sock: socket.socket, stream: IOStream | None, address: Any) -> None:
        if stream is None:
            try:
                stream = IOStream(
                    sock, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
                )
            except OSError:
                sock.close()
                return
        super().handle_stream(stream, address)

    def upgrade_address(self, sock: socket.socket, address: Any, req: Request) -> str | None:
        """The client's address for an upgrade this path serves (as the access log shows it),
        or None to leave the request to Tornado. A server with admission control overrides it
        to count the upgrade against the client's limits (server/process/httpserver.py)."""
        ip = address[0] if isinstance(address, tuple) else str(address)
        if self._xheaders:
            forwarded = req.headers.get("x-forwarded-for", "").split(",")[-1].strip()
            ip = req.headers.get("x-real-ip") or forwarded or ip
        return ip

    def _log(self, req: Request, ip: str, seconds: float) -> None:
        """The access log line Tornado writes for a 101 (server.process.logs.access_log's
        shape)."""
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
        expired = [fd for fd, (_, _, _, deadline) in self._waiting.items() if deadline <= now]
        for fd in expired:
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        entry = self._waiting.pop(fd, None)
        if entry is not None:
            asyncio.get_running_loop().remove_reader(fd)
            entry[0].close()

    async def close_all_connections(self) -> None:
        for fd in list(self._waiting):
            self._drop(fd)
        if self._idle_sweeper is not None:
            self._idle_sweeper.stop()
            self._idle_sweeper = None
        await super().close_all_connections()
