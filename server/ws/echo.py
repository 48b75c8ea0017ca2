"""Echo on the production transport: `python -m server.ws.echo --port N [--max-message-bytes B]`.

See the package docstring (server/ws/__init__.py) for what it serves and why.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

import tornado.httpserver
import tornado.netutil
import tornado.web

from server.config import ServerConfig
from server.ws import frame
from server.ws.handler import SocketHandler
from server.ws.outbox import Flusher
from server.ws.transport import Transport

#: The server's defaults, which the echo starts from.
DEFAULTS = ServerConfig()


class EchoHandler(SocketHandler):
    """Sends every message back as it came: text as text, binary as binary."""

    def initialize(self, flusher: Flusher, max_pending_bytes: int) -> None:
        self.flusher = flusher
        self.max_pending_bytes = max_pending_bytes
        self.transport: Transport | None = None

    def check_origin(self, origin: str) -> bool:
        """Any origin: this endpoint serves test suites on loopback and holds nothing to steal."""
        return True

    def opened(self, transport: Transport) -> None:
        self.transport = transport

    def on_message(self, message: str | bytes) -> None:
        assert self.transport is not None
        if isinstance(message, str):
            self.transport.send(frame.text(message.encode()))
        else:
            self.transport.send(frame.encode(frame.BINARY, message))


def make_app(max_message_bytes: int = DEFAULTS.max_message_bytes) -> tornado.web.Application:
    """The echo application: /echo, messages up to `max_message_bytes`."""
    pending = max(DEFAULTS.max_pending_bytes, 2 * max_message_bytes)
    return tornado.web.Application(
        [(r"/echo", EchoHandler, {"flusher": Flusher(), "max_pending_bytes": pending})],
        websocket_max_message_size=max_message_bytes,
    )


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
    server = tornado.httpserver.HTTPServer(make_app(args.max_message_bytes))
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
