"""Tornado's HTTPServer with admission control, timeouts and proxy headers from proxies only.

What it adds (see docs/security.md):
- A storm of connects (every client of a restarted process at once) is accepted at once, up
  to ACCEPT_BATCH per readable event, but served HANDLE_BATCH per turn of the event loop,
  oldest first. Connects then wait here rather than in the kernel's backlog, which past
  net.core.somaxconn drops their SYNs (each such client waits out TCP's retransmission: 1,
  3, 7 s), and no turn grows so long that the store's replies crawl: pymongo takes about
  nine turns per operation, and the channels' seeds that every reconnecting subscriber waits
  for are such operations (docs/benchmarks.md, the eighth round).
- Every accepted socket is counted (server/process/admission.py). At `[server] max_sockets` the
  listening sockets leave the event loop, so the kernel's backlog holds further connects
  instead of the process spinning on them; they come back once the count has fallen a little.
  An `accept` that fails for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM)
  pauses accepting for a moment instead of raising in a loop (Tornado's accept handler
  raises and is called again at once: a traceback per turn of the loop).
- A connection from an address over `[limits] sockets_per_ip` or `connects_per_ip_per_s` is
  answered `429 Too Many Requests` with `Retry-After` straight away, without parsing a
  request, and closed; while many such answers are in flight, further ones are closed unanswered.
- `idle_timeout_s` closes a connection whose request headers (a WebSocket upgrade's
  included) are not complete in time, counted from the end of the previous request;
  `body_timeout_s` does the same for a request body.
- `X-Forwarded-For`/`X-Real-Ip` and `X-Forwarded-Proto`/`X-Scheme` are read only on
  connections from `[server] trusted_proxies`; there the forwarded address is the one limited
  (per request for the rate; per WebSocket for `sockets_per_ip`).
Every refusal is logged through a Throttle: at most one line a second per kind, with a count.

Plain WebSocket upgrades are answered without Tornado's handler (server/ws/listener.py, the
base class), but only once the connection was admitted here: the fast path starts in
`handle_stream`, which `_admit` calls. On a trusted proxy's connection, the forwarded address
is limited and charged in `upgrade_address` as `_Forwarded` does on Tornado's path; one over
its limits is left to Tornado's path, which answers the 429.
"""

from __future__ import annotations

import collections
import errno
import socket
from collections.abc import Awaitable, Iterable
from typing import Any, cast

import tornado.httpserver
import tornado.httputil
from tornado import gen
from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream, StreamClosedError, UnsatisfiableReadError

from server.process.admission import SWEEP_S, Admission, CountedSocket, Networks
from server.ws.handshake import Request
from server.ws.listener import UpgradeServer

#: Connections accepted per readable event before other work gets a turn (Tornado's 128).
#: Accepting is cheap; serving them is what HANDLE_BATCH paces.
ACCEPT_BATCH = 512
#: Accepted connections that start being served per turn of the event loop.
HANDLE_BATCH = 32
#: After an accept failed for want of resources, wait this long before accepting again.
ACCEPT_RETRY_S = 0.25
#: 429 answers in flight at once; beyond this a refused connection is closed unanswered.
MAX_REFUSING = 64
#: How long a refused connection may take to send its request head before it is closed.
REFUSE_LINGER_S = 1.0
_SCARCE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def too_many(retry_after: int) -> bytes:
    """The whole 429 response, written before the request is read."""
    body = b'{"error":{"code":"limit_exceeded","message":"too many connections"}}'
    return (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: %d\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (retry_after, len(body), body)
    )


class GuardedHTTPServer(UpgradeServer):
    """An HTTPServer that admits connections through an Admission (module docstring), with
    the WebSocket fast path of UpgradeServer (`upgrades`) behind it."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Any,
        *,
        admission: Admission,
        trusted_proxies: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        super().initialize(request_callback, xheaders=False, **kwargs)
        self.admission = admission
        admission.on_room = self._resume
        self.trusted = Networks(trusted_proxies)
        self._listening: dict[int, socket.socket] = {}
        self._paused = False
        self._retry: object | None = None
        self._refusing = 0
        self._sweeper: PeriodicCallback | None = None
        #: Accepted connections not yet served, oldest first, and whether a turn will serve some.
        self._accepted: collections.deque[tuple[socket.socket, Any]] = collections.deque()
        self._serving = False

    # -- accepting -----------------------------------------------------------------------------

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Like TCPServer's, with our accept handler (TCPServer.stop removes it as usual)."""
        loop = IOLoop.current()
        for sock in sockets:
            fd = sock.fileno()
            self._sockets[fd] = sock
            self._listening[fd] = sock
            self._handlers[fd] = self._remover(sock)
            if not self._paused:
                loop.add_handler(sock, self._on_acceptable, IOLoop.READ)
        if self._sweeper is None:
            self._sweeper = PeriodicCallback(self.admission.sweep, SWEEP_S * 1000)
            self._sweeper.start()

    def _remover(self, sock: socket.socket) -> Any:
        def remove() -> None:
            self._listening.pop(sock.fileno(), None)
            if not self._paused:
                IOLoop.current().remove_handler(sock)
            if not self._listening and self._sweeper is not None:
                self._sweeper.stop()

        return remove

    def _on_acceptable(self, sock: socket.socket, events: int) -> None:
        if self._stopped:
            return
        gate = self.admission
        for _ in range(ACCEPT_BATCH):
            if gate.full:
                self._pause()
                gate.throttle.note(
                    "max_sockets",
                    "max_sockets (%d) reached: not accepting until some close",
                    gate.max_sockets,
                )
                return
            try:
                conn, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._pause(ACCEPT_RETRY_S)
                scarce = exc.errno in _SCARCE
                gate.throttle.note(
                    "accept_failed" if not scarce else "accept_no_resources",
                    "accept failed (%s): paused for %.2f s",
                    errno.errorcode.get(exc.errno or 0, str(exc)),
                    ACCEPT_RETRY_S,
                )
                return
            self._admit(conn, address)

    def _pause(self, retry_s: float | None = None) -> None:
        """Take the listening sockets out of the loop; back after `retry_s`, or when there is
        room again (Admission.on_room)."""
        loop = IOLoop.current()
        if not self._paused:
            self._paused = True
            for sock in self._listening.values():
                loop.remove_handler(sock)
        if retry_s is not None and self._retry is None:
            self._retry = loop.call_later(retry_s, self._retry_accept)

    def _retry_accept(self) -> None:
        self._retry = None
        self._resume()

    def _resume(self) -> None:
        if not self._paused or self.admission.full or self._retry is not None:
            return
        self._paused = False
        loop = IOLoop.current()
        for sock in self._listening.values():
            loop.add_handler(sock, self._on_acceptable, IOLoop.READ)

    def _admit(self, conn: socket.socket, address: Any) -> None:
        ip: str | None = address[0] if isinstance(address, tuple) else None
        # A trusted proxy's connections carry many clients: those are limited per request.
        exempt = ip is None or ip in self.trusted
        refusal = None if ip is None or exempt else self.admission.refusal(ip)
        if refusal is not None and self._refusing >= MAX_REFUSING:
            conn.close()
            self.admission.throttle.note(
                refusal[0], "%s: closed a connection from %s unanswered", refusal[0], ip
            )
            return
        try:
            sock = CountedSocket(conn, self.admission)
        except OSError:
            conn.close()
            return
        if refusal is not None:
            self.admission.throttle.note(refusal[0], "%s: answered 429 to %s", refusal[0], ip)
            IOLoop.current().add_future(
                gen.convert_yielded(self._refuse(sock, refusal[1])), lambda f: f.result()
            )
            return
        if ip is not None and not exempt:
            sock.charge(ip)
        self._accepted.append((sock, address))
        if not self._serving:
            self._serving = True
            IOLoop.current().add_callback(self._serve_accepted)

    def _serve_accepted(self) -> None:
        """Start serving the oldest accepted connections, HANDLE_BATCH a turn."""
        accepted = self._accepted
        try:
            for _ in range(min(HANDLE_BATCH, len(accepted))):
                self.handle_socket(*accepted.popleft())
        finally:  # one connection's failure must not leave the others waiting
            if accepted:
                IOLoop.current().add_callback(self._serve_accepted)
            else:
                self._serving = False

    async def _refuse(self, sock: CountedSocket, retry_after: int) -> None:
        """Answer 429 at once, read the request head (so closing does not reset the answer
        away), close."""
        self._refusing += 1
        stream = IOStream(sock)
        try:
            stream.write(too_many(retry_after))
            await gen.with_timeout(
                IOLoop.current().time() + REFUSE_LINGER_S,
                stream.read_until_regex(b"\r?\n\r?\n", max_bytes=16384),
                quiet_exceptions=(StreamClosedError, UnsatisfiableReadError),
            )
        except (StreamClosedError, UnsatisfiableReadError, TimeoutError):
            pass
        finally:
            self._refusing -= 1
            stream.close()

    def upgrade_address(self, sock: socket.socket, address: Any, req: Request) -> str | None:
        """A direct connection was admitted when accepted; a trusted proxy's upgrade is
        limited by its forwarded address here, and charged to it for the WebSocket's life."""
        peer: str | None = address[0] if isinstance(address, tuple) else None
        if peer is None or peer not in self.trusted:
            return peer if peer is not None else str(address)
        ip = forwarded_for(tornado.httputil.HTTPHeaders(req.headers), peer, self.trusted)
        if self.admission.refusal(ip) is not None:
            return None  # Tornado's path asks again (a refusal takes no token) and answers 429
        if isinstance(sock, CountedSocket):
            sock.charge(ip)
        return ip

    # -- requests ------------------------------------------------------------------------------

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        conn = cast(HTTP1Connection, request_conn)
        if conn.context.remote_ip in self.trusted:  # type: ignore[attr-defined]
            return _Forwarded(self, delegate, conn)
        return delegate


def forwarded_for(headers: tornado.httputil.HTTPHeaders, peer: str, trusted: Networks) -> str:
    """The client's address behind trusted proxies: the right-most address in
    X-Forwarded-For that is not itself a trusted proxy (a proxy appends the address it saw),
    else X-Real-Ip, else the peer."""
    chain = [a.strip() for a in headers.get("X-Forwarded-For", "").split(",") if a.strip()]
    for addr in reversed(chain):
        if not _is_ip(addr):
            break
        if addr not in trusted:
            return addr
    real = headers.get("X-Real-Ip", "").strip()
    if _is_ip(real):
        return real
    return peer


def forwarded_proto(headers: tornado.httputil.HTTPHeaders, proto: str) -> str:
    value = headers.get("X-Forwarded-Proto", headers.get("X-Scheme", proto))
    value = value.split(",")[-1].strip().lower()
    return value if value in ("http", "https") else proto


def _is_ip(value: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
    except OSError:
        return False
    return True


class _Forwarded(tornado.httputil.HTTPMessageDelegate):
    """A request from a trusted proxy: the forwarded address and scheme, limited per address."""

    def __init__(
        self,
        server: GuardedHTTPServer,
        delegate: tornado.httputil.HTTPMessageDelegate,
        conn: HTTP1Connection,
    ) -> None:
        self.server = server
        self.delegate = delegate
        self.conn = conn
        self.context: Any = cast(Any, conn.context)
        self.peer, self.proto = self.context.remote_ip, self.context.protocol
        self.refused = False

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        ip = forwarded_for(headers, self.peer, self.server.trusted)
        self.context.remote_ip = ip
        self.context.protocol = forwarded_proto(headers, self.proto)
        gate = self.server.admission
        refusal = gate.refusal(ip)
        if refusal is not None:
            self.refused = True
            gate.throttle.note(refusal[0], "%s: answered 429 to %s (forwarded)", refusal[0], ip)
            self._answer_429(refusal[1])
            return None
        if headers.get("Upgrade", "").lower() == "websocket":
            sock = self.conn.stream.socket
            if isinstance(sock, CountedSocket):
                sock.charge(ip)  # held for as long as the WebSocket lives
        return self.delegate.headers_received(start_line, headers)

    def _answer_429(self, retry_after: int) -> None:
        body = b'{"error":{"code":"limit_exceeded","message":"too many connections"}}'
        headers = tornado.httputil.HTTPHeaders(
            {
                "Retry-After": str(retry_after),
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
            }
        )  # the proxy's connection stays: it carries other clients' requests too
        start = tornado.httputil.ResponseStartLine("HTTP/1.1", 429, "Too Many Requests")
        self.conn.write_headers(start, headers, body)
        self.conn.finish()

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return None if self.refused else self.delegate.data_received(chunk)

    def finish(self) -> None:
        if not self.refused:
            self.delegate.finish()
        self._restore()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.delegate.on_connection_close()
        self._restore()

    def _restore(self) -> None:
        self.context.remote_ip, self.context.protocol = self.peer, self.proto
