"""One WebSocket connection to the server: commands out, replies matched by id, pushes on.

Frames are JSON text, or MessagePack binary when the client asked for the `switchboard.msgpack`
subprotocol and the server agreed (docs/protocol.md, "Subprotocols").

Replies are handled synchronously in the read loop, in frame order. That matters for
`subscribe`: its reply must take effect before the next frame (maybe the channel's next
publication) is read, or a publication could slip between the recovered ones and the live ones.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import orjson
import ormsgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from switchboard_client.errors import ConnectionLost, SwitchboardError
from switchboard_client.types import Hello

#: A reply handler gets the reply frame, or ConnectionLost if the connection closed first.
ReplyHandler = Callable[[dict[str, Any] | ConnectionLost], None]
PushHandler = Callable[[dict[str, Any]], None]

DEAD = 4000  # the close code this client reports for a connection it declared dead
MSGPACK = Subprotocol("switchboard.msgpack")
JSON = Subprotocol("switchboard.json")


def decode(raw: str | bytes) -> Any:
    """A frame's message: binary frames are MessagePack, text frames JSON."""
    return ormsgpack.unpackb(raw) if isinstance(raw, bytes) else orjson.loads(raw)


class Connection:
    def __init__(self, ws: ClientConnection, hello: Hello, on_push: PushHandler) -> None:
        self.ws = ws
        #: "msgpack" when the server agreed to the MessagePack subprotocol, else "json"
        self.encoding = "msgpack" if ws.subprotocol == MSGPACK else "json"
        self.hello = hello
        self._on_push = on_push
        self._pending: dict[int, ReplyHandler] = {}
        self._ids = itertools.count(1)
        self._dead: str | None = None
        #: the server's last `disconnect` push: why it is about to close
        self.disconnect_push: dict[str, Any] | None = None

    @classmethod
    async def open(
        cls, url: str, timeout: float, on_push: PushHandler, encoding: str = "json"
    ) -> Connection:
        """Connect and wait for the server's hello, all within `timeout` seconds."""
        async with asyncio.timeout(timeout):
            ws = await connect(
                url,
                open_timeout=None,
                ping_interval=None,
                close_timeout=2,
                max_size=None,
                subprotocols=[MSGPACK, JSON] if encoding == "msgpack" else None,
            )
            try:
                hello = decode(await ws.recv())
            except BaseException:
                ws.transport.abort()
                raise
        if not isinstance(hello, dict) or hello.get("push") != "hello":
            ws.transport.abort()
            raise SwitchboardError("bad_request", f"expected the server's hello, got {hello!r}")
        return cls(ws, hello, on_push)  # type: ignore[arg-type]

    async def send(self, op: str, fields: dict[str, Any], on_reply: ReplyHandler) -> None:
        """Send a command; `on_reply` is called from the read loop with its reply."""
        if self._dead is not None:
            raise ConnectionLost()
        cmd_id = next(self._ids)
        self._pending[cmd_id] = on_reply
        try:
            cmd = {"id": cmd_id, "op": op, **fields}
            if self.encoding == "msgpack":
                await self.ws.send(ormsgpack.packb(cmd))
            else:
                await self.ws.send(orjson.dumps(cmd), text=True)
        except ConnectionClosed:
            self._pending.pop(cmd_id, None)
            raise ConnectionLost() from None

    async def call(self, op: str, fields: dict[str, Any]) -> Any:
        """Send a command and return its result, or raise SwitchboardError."""
        future: asyncio.Future[dict[str, Any] | ConnectionLost] = (
            asyncio.get_running_loop().create_future()
        )

        def settle(reply: dict[str, Any] | ConnectionLost) -> None:
            if not future.done():
                future.set_result(reply)

        await self.send(op, fields, settle)
        return result_of(await future)

    async def run(self, ping_interval: float, ping_timeout: float) -> tuple[int, str]:
        """Read until the connection ends, pinging meanwhile; returns its close code and reason.

        A ping unanswered for `ping_timeout` seconds means the connection is dead: the socket
        is dropped at once (no close handshake with a peer that does not answer).
        """
        pinger = asyncio.create_task(self._ping_forever(ping_interval, ping_timeout))
        try:
            async for raw in self.ws:
                self._receive(raw)
        except ConnectionClosed:
            pass
        finally:
            pinger.cancel()
            self._fail_pending()
        if self._dead is not None:
            return DEAD, self._dead
        return self.ws.close_code or 1006, self.ws.close_reason or ""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._fail_pending()
        await self.ws.close(code, reason)

    def _receive(self, raw: str | bytes) -> None:
        try:
            msg = decode(raw)
        except (ValueError, TypeError):  # JSONDecodeError is a ValueError
            return
        if not isinstance(msg, dict):
            return
        cmd_id = msg.get("id")
        if cmd_id is not None:
            handler = self._pending.pop(cmd_id, None)
            if handler is not None:
                handler(msg)
            return
        if msg.get("push") == "disconnect":
            self.disconnect_push = msg
        self._on_push(msg)

    async def _ping_forever(self, interval: float, timeout: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(timeout):
                    await self.call("ping", {})
            except TimeoutError:
                self._dead = "ping unanswered"
                self.ws.transport.abort()
                return
            except SwitchboardError:
                return  # the connection closed meanwhile: the read loop says how

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for handler in pending.values():
            handler(ConnectionLost())


def result_of(reply: dict[str, Any] | ConnectionLost) -> Any:
    """A reply's result, or its error raised."""
    if isinstance(reply, ConnectionLost):
        raise reply
    error = reply.get("error")
    if error is not None:
        raise SwitchboardError(str(error.get("code")), str(error.get("message")))
    return reply.get("result")
