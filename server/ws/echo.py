"""Echo on the production transport: `python -m server.ws.echo --port N [--max-message-bytes B]`.

See the package docstring (server/ws/__init__.py) for what it serves and why.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

import tornado.netutil
import tornado.web

from server.config import ServerConfig
from server.ws import frame
from server.ws.handler import SocketHandler
from server.ws.handshake import Request
from server.ws.listener import UpgradeServer
from server.ws.outbox import Flusher
from server.ws.websocket import WebSocket

#: The server's defaults, which the echo starts from.
DEFAULTS = ServerConfig()


class Echo:
    """Sends every message back as it came: text as text, binary as binary."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.ws.send(frame.text(message.encode()))
        else:
            self.ws.send(frame.encode(frame.BINARY, message))

    def on_ping(self) -> None:
        pass

    def on_pong(self) -> None:
        pass

    def on_closed(self) -> None:
        pass

    def too_slow(self) -> None:
        self.ws.close(4009, "client too slow")


class EchoEndpoint:
    """/echo: any origin (it serves test suites on loopback and holds nothing to steal)."""

    def __init__(self, max_message_bytes: int) -> None:
        self.flusher = Flusher()
        self.max_message_bytes = max_message_bytes
        self.max_pending_bytes = max(DEFAULTS.max_pending_bytes, 2 * max_message_bytes)

    def admit(self, req: Request) -> bool:
        return True

    def select_subprotocol(self, offered: list[str]) -> str | None:
        return None  # it speaks none: the upgrade names none, as Tornado's handler's would

    def open(self, ws: WebSocket, admitted: bool, subprotocol: str | None) -> Echo:
        return Echo(ws)


class EchoHandler(SocketHandler):
    """/echo through Tornado, for the upgrades the listener leaves to it."""

    def initialize(self, endpoint: EchoEndpoint) -> None:
        self.endpoint = endpoint
        self.admitted = True

    def check_origin(self, origin: str) -> bool:
        return True


def make_app(max_message_bytes: int = DEFAULTS.max_message_bytes) -> tornado.web.Application:
    """The echo application: /echo, messages up to `max_message_bytes`."""
    endpoint = EchoEndpoint(max_message_bytes)
    return tornado.web.Application(
        [(r"/echo", EchoHandler, {"endpoint": endpoint})],
        websocket_max_message_size=max_message_bytes,
        echo_endpoint=endpoint,
    )


def make_server(app: tornado.web.Application) -> UpgradeServer:
    """The HTTP server, plain upgrades to /echo answered by the listener."""
    return UpgradeServer(app, upgrades={"/echo": app.settings["echo_endpoint"]})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m server.ws.echo",
        description="Echo WebSocket messages at /echo through Switchboard's transport.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9001, help="port (default 9001; 0: any free one)")
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULTS.max_message_bytes,
        help="longest message accepted (default 65536); a longer one is closed with 1009",
    )
    args = p.parse_args(argv)
    if args.max_message_bytes < 1:
        p.error("--max-message-bytes: must be a positive integer")
    return args


async def serve(args: argparse.Namespace) -> None:
    sockets = tornado.netutil.bind_sockets(args.port, args.host)
    server = make_server(make_app(args.max_message_bytes))
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    print(f"echo on ws://{args.host}:{port}/echo", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await server.close_all_connections()


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
