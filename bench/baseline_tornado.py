"""The smallest correct bare-Tornado broadcast server speaking the bench's protocol-v1 subset.

Why: every benchmark reports Switchboard's figures as a ratio to this server, run on the same
machine in the same run, so the numbers say what Switchboard costs over Tornado itself rather than
what this machine can do. One process, per-channel offsets, one `write_message` per subscriber,
no history, auth, presence or rate limits.

    python -m bench.baseline_tornado --port 8899

`--drop-offset N` deliberately breaks it: the publication at offset N of each channel is not sent
to that channel's first subscriber, so tests can check the load tester catches one lost message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import time
from typing import Any

import orjson
import psutil
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from switchboard_load.fdlimit import raise_nofile


class Channel:
    """A channel's subscribers (insertion-ordered) and last offset."""

    __slots__ = ("subscribers", "offset", "epoch")

    def __init__(self) -> None:
        self.subscribers: dict[BroadcastSocket, None] = {}
        self.offset = 0
        self.epoch = secrets.token_hex(4)


class Broadcaster:
    """All server state, owned by the application (not a class attribute)."""

    def __init__(self, drop_offset: int | None) -> None:
        self.channels: dict[str, Channel] = {}
        self.connections = 0
        self.drop_offset = drop_offset
        self.messages_in = 0
        self.messages_out = 0

    def channel(self, name: str) -> Channel:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = Channel()
        return ch

    def publish(self, name: str, data: Any, info: dict[str, Any] | None) -> dict[str, Any]:
        ch = self.channel(name)
        ch.offset += 1
        pub: dict[str, Any] = {"push": "pub", "channel": name, "offset": ch.offset, "data": data}
        if info is not None:
            pub["info"] = info
        pub["ts"] = int(time.time() * 1000)
        frame = orjson.dumps(pub)
        skip_first = ch.offset == self.drop_offset
        for sub in list(ch.subscribers):
            if skip_first:
                skip_first = False
                continue
            try:
                sub.write_message(frame)
            except WebSocketClosedError:
                continue
            self.messages_out += 1
        return {"offset": ch.offset, "epoch": ch.epoch}


class BroadcastSocket(WebSocketHandler):
    def initialize(self, hub: Broadcaster) -> None:
        self.hub = hub
        self.client_id = secrets.token_hex(8)
        self.subs: set[str] = set()

    def check_origin(self, origin: str) -> bool:
        return True  # a benchmark target on loopback; no cookies, nothing to protect

    def open(self, *args: str, **kwargs: str) -> None:
        self.hub.connections += 1
        hello = {
            "push": "hello",
            "client": self.client_id,
            "user": None,
            "node": f"baseline-{os.getpid()}",
            "ping_interval": 25,
            "version": 1,
        }
        self.write_message(orjson.dumps(hello))

    def on_message(self, message: str | bytes) -> None:
        self.hub.messages_in += 1
        try:
            cmd = orjson.loads(message)
            cmd_id = cmd["id"]
            op = cmd["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._reply(None, error=("bad_request", "not a command"))
            return
        if op == "ping":
            self._reply(cmd_id, {})
        elif op == "subscribe" and isinstance(cmd.get("channel"), str):
            ch = self.hub.channel(cmd["channel"])
            ch.subscribers[self] = None
            self.subs.add(cmd["channel"])
            self._reply(
                cmd_id, {"offset": ch.offset, "epoch": ch.epoch, "recovered": False, "missed": []}
            )
        elif op == "unsubscribe" and isinstance(cmd.get("channel"), str):
            self.hub.channel(cmd["channel"]).subscribers.pop(self, None)
            self.subs.discard(cmd["channel"])
            self._reply(cmd_id, {})
        elif op == "publish" and isinstance(cmd.get("channel"), str):
            info = {"user": None, "client": self.client_id}
            self._reply(cmd_id, self.hub.publish(cmd["channel"], cmd.get("data"), info))
        else:
            self._reply(cmd_id, error=("unknown_op", f"unsupported op {op!r}"))

    def _reply(
        self, cmd_id: int | None, result: Any = None, error: tuple[str, str] | None = None
    ) -> None:
        if error is not None:
            msg: dict[str, Any] = {"error": {"code": error[0], "message": error[1]}}
            if cmd_id is not None:
                msg["id"] = cmd_id
        else:
            msg = {"id": cmd_id, "ok": True, "result": result}
        try:
            self.write_message(orjson.dumps(msg))
        except WebSocketClosedError:
            pass

    def on_close(self) -> None:
        self.hub.connections -= 1
        for name in self.subs:
            self.hub.channel(name).subscribers.pop(self, None)


class ApiHandler(RequestHandler):
    def initialize(self, hub: Broadcaster, api_key: str | None) -> None:
        self.hub = hub
        self.api_key = api_key

    def prepare(self) -> None:
        if self.api_key and self.request.headers.get("Authorization") != f"apikey {self.api_key}":
            self.set_status(401)
            self.finish({"error": {"code": "unauthorized", "message": "bad api key"}})


class PublishHandler(ApiHandler):
    def post(self) -> None:
        try:
            body = orjson.loads(self.request.body)
            channel = body["channel"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.set_status(400)
            self.finish({"error": {"code": "bad_request", "message": "need channel and data"}})
            return
        self.finish(self.hub.publish(channel, body.get("data"), None))


class StatsHandler(ApiHandler):
    def get(self) -> None:
        me = psutil.Process()
        rss = me.memory_info().rss
        proc = {
            "pid": os.getpid(),
            "rss_bytes": rss,
            "connections": self.hub.connections,
            "cpu_s": round(sum(me.cpu_times()[:2]), 3),
            "messages_in": self.hub.messages_in,
            "messages_out": self.hub.messages_out,
        }
        self.finish(
            {
                "connections": self.hub.connections,
                "rss_bytes": rss,
                "channels": len(self.hub.channels),
                "processes": [proc],
            }
        )


def make_app(drop_offset: int | None = None, api_key: str | None = None) -> Application:
    hub = Broadcaster(drop_offset)
    return Application(
        [
            (r"/ws", BroadcastSocket, {"hub": hub}),
            (r"/api/publish", PublishHandler, {"hub": hub, "api_key": api_key}),
            (r"/api/stats", StatsHandler, {"hub": hub, "api_key": api_key}),
        ]
    )


async def serve(port: int, host: str, drop_offset: int | None, api_key: str | None) -> None:
    raise_nofile()
    server = HTTPServer(make_app(drop_offset, api_key))
    server.listen(port, host, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"baseline tornado listening on {host}:{port}", flush=True)
    await stop.wait()
    server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description="Bare Tornado broadcast server (bench baseline)")
    ap.add_argument("--port", type=int, default=8899)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--api-key", default=None, help="require this key on /api (default: none)")
    ap.add_argument("--drop-offset", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    asyncio.run(serve(args.port, args.host, args.drop_offset, args.api_key))


if __name__ == "__main__":
    main()
