"""One protocol-v1 client connection on picows: hello, commands with ids, pub pushes.

Why picows + orjson: measured cheapest per received frame (bench/README.md). Frames are handled in
the picows callback itself, with no task or queue per message; commands resolve futures by `id`.
With `encoding="msgpack"` it offers the `switchboard.msgpack` subprotocol and speaks MessagePack
in binary frames (ormsgpack); `payload_bytes` counts what each frame carried, for bytes per
delivery in either encoding.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections.abc import Callable
from itertools import count
from typing import Any

import orjson
import ormsgpack
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

#: Linux IP_BIND_ADDRESS_NO_PORT: pick the source port at connect(), per destination, not at bind().
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE
_loads = orjson.loads
_unpackb = ormsgpack.unpackb
MSGPACK = "switchboard.msgpack"

PubHandler = Callable[["Client", dict[str, Any]], None]
#: Hears of an `unsubscribed` push: the client and the push's channel and reason.
UnsubscribedHandler = Callable[["Client", str, str], None]


class CommandError(Exception):
    """An error reply to a command; `code` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Client(WSListener):
    """A WSListener that speaks protocol v1. `on_pub` is called for every pub push."""

    def __init__(self, on_pub: PubHandler | None = None, binary: bool = False) -> None:
        self.on_pub = on_pub
        self.binary = binary  # commands as MessagePack binary frames
        self.transport: WSTransport | None = None
        self.hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._ids = count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.frames = 0
        self.payload_bytes = 0
        self.tag: Any = None  # the owner's per-connection state (e.g. its OffsetChecker)
        self.name = ""  # the owner's name for it (its token's subject)
        self.epoch: str | None = None  # the subscribed channel's epoch, from the reply
        #: the server's `disconnect` push, if it sent one: whether and when to reconnect
        self.disconnect_push: dict[str, Any] | None = None
        self.hello_at = 0.0  # time.monotonic() when the hello arrived
        #: Reasons of the server's `unsubscribed` pushes: a subscription it ended (the run
        #: reports them, rather than counting what followed as lost).
        self.unsubscribed: list[str] = []
        #: The owner's answer to an `unsubscribed` push (the worker resubscribes its holders).
        self.on_unsubscribed: UnsubscribedHandler | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # the hot path (one call per delivery): a text frame holding a pub push
        if frame.msg_type is _TEXT:
            self.frames += 1
            self.payload_bytes += frame.payload_size
            msg = _loads(frame.get_payload_as_memoryview())
            if msg.get("push") == "pub":
                if self.on_pub is not None:
                    self.on_pub(self, msg)
            else:
                self._other(msg)
        elif frame.msg_type is _BINARY:  # the same, in MessagePack
            self.frames += 1
            self.payload_bytes += frame.payload_size
            msg = _unpackb(frame.get_payload_as_bytes())
            if msg.get("push") == "pub":
                if self.on_pub is not None:
                    self.on_pub(self, msg)
            else:
                self._other(msg)
        elif frame.msg_type is _CLOSE:
            code = frame.get_close_code()
            if not self.closed.done():
                value: Any = getattr(code, "value", code)  # an enum member, or a bare int code
                self.closed.set_result(int(value))
            transport.send_close(code)
            transport.disconnect()

    def _other(self, msg: dict[str, Any]) -> None:
        """Replies, hello, disconnect and unsubscribed pushes; others (join, leave) are
        ignored."""
        push = msg.get("push")
        if push is None:
            fut = self._pending.pop(msg.get("id", -1), None)
            if fut is not None and not fut.done():
                err = msg.get("error")
                if err is not None:
                    fut.set_exception(CommandError(err.get("code", "?"), err.get("message", "")))
                else:
                    fut.set_result(msg.get("result"))
        elif push == "hello" and not self.hello.done():
            self.hello_at = time.monotonic()
            self.hello.set_result(msg)
        elif push == "disconnect":
            self.disconnect_push = msg
            if not self.closed.done():
                self.closed.set_result(int(msg.get("code", 0)))
        elif push == "unsubscribed":
            reason = str(msg.get("reason", ""))
            self.unsubscribed.append(reason)
            if self.on_unsubscribed is not None:
                self.on_unsubscribed(self, str(msg.get("channel", "")), reason)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.hello.done():
            self.hello.set_exception(ConnectionError("closed before hello"))
            self.hello.exception()  # whoever awaits it still gets it; nobody else is warned
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))
        self._pending.clear()

    def send_command(self, op: str, **fields: Any) -> asyncio.Future[Any]:
        """Send one command; the future resolves with its `result` or raises CommandError."""
        assert self.transport is not None
        cmd_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[cmd_id] = fut
        cmd = {"id": cmd_id, "op": op, **fields}
        if self.binary:
            self.transport.send(WSMsgType.BINARY, ormsgpack.packb(cmd))
        else:
            self.transport.send(WSMsgType.TEXT, orjson.dumps(cmd))
        return fut

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        if self.transport is not None:
            # picows's default close code is 0, which RFC 6455 forbids (the server answers 1002).
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()


def _socket_factory(source: str) -> Callable[[Any], socket.socket]:
    def make(_url: Any) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    return make


async def connect(
    url: str,
    on_pub: PubHandler | None = None,
    source: str | None = None,
    timeout: float = 10.0,
    encoding: str = "json",
) -> Client:
    """Open a connection (bound to `source` if given) and wait for the server's hello push."""
    binary = encoding == "msgpack"
    headers = {"Sec-WebSocket-Protocol": MSGPACK} if binary else None

    async def go() -> Client:
        factory = _socket_factory(source) if source else None
        transport, client = await ws_connect(
            lambda: Client(on_pub, binary),
            url,
            ssl_context=_tls() if url.startswith("wss:") else None,
            socket_factory=factory,
            websocket_handshake_timeout=timeout,
            extra_headers=headers,
        )
        assert isinstance(client, Client)
        agreed = transport.response.headers.get("Sec-WebSocket-Protocol")
        if binary and agreed != MSGPACK:
            client.close()
            raise ConnectionError(f"the server did not agree to {MSGPACK} (it said {agreed!r})")
        try:
            await client.hello
        except BaseException:
            client.close()
            raise
        return client

    return await asyncio.wait_for(go(), timeout)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One client TLS context per process: made per connection (the default), loading the
    trusted certificates cost the tester milliseconds of CPU on every wss:// connect."""
    return ssl.create_default_context()


def error_cause(exc: BaseException) -> str:
    """A short, stable name for why a connection or command failed, for `errors` by cause."""
    if isinstance(exc, CommandError):
        return f"error:{exc.code}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    status = getattr(getattr(exc, "response", None), "status", None)
    if status is not None:
        return f"http:{int(status)}"
    if isinstance(exc, OSError) and exc.errno is not None:
        import errno

        return errno.errorcode.get(exc.errno, f"errno:{exc.errno}")
    return type(exc).__name__
