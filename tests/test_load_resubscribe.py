"""The load tester's subscribers resubscribe when the server ends a subscription with
`insufficient_state`, as the browser client does, from where their delivery check is; one
ended by an admin (`server`) stays ended.

Against a scripted server: the real one ends subscriptions only on races (a broker reconnect
that finds a gap), which a test cannot bring about every time.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import orjson
import pytest
import tornado.httpserver
import tornado.testing
import tornado.web
import tornado.websocket

from switchboard_load.checker import OffsetChecker
from switchboard_load.params import parse_params
from switchboard_load.worker_connections import Connections
from switchboard_load.worker_state import WorkerPlan

pytestmark = pytest.mark.asyncio


class Scripted(tornado.websocket.WebSocketHandler):
    """Hello; the first subscribe gets offset 0, publication 1 and then `unsubscribed` with the
    test's reason; a later one gets publication 2 as missed, then publication 3 live."""

    reason = "insufficient_state"
    subscribes: list[dict[str, Any]] = []

    def open(self, *args: str, **kwargs: str) -> None:
        self.push({"push": "hello", "client": "c1", "user": "", "node": "n", "version": 1})

    def push(self, msg: dict[str, Any]) -> None:
        self.write_message(orjson.dumps(msg).decode())

    def pub(self, offset: int) -> dict[str, Any]:
        return {"push": "pub", "channel": "news", "offset": offset, "data": offset, "ts": 1}

    def on_message(self, message: str | bytes) -> None:
        cmd = orjson.loads(message)
        assert cmd["op"] == "subscribe"
        self.subscribes.append(cmd)
        if len(self.subscribes) == 1:
            self.push({"id": cmd["id"], "result": {"offset": 0, "epoch": "e", "recovered": True}})
            self.push(self.pub(1))
            self.push({"push": "unsubscribed", "channel": "news", "reason": self.reason})
            return
        missed = [{k: v for k, v in self.pub(2).items() if k != "push"}]
        result = {"offset": 2, "epoch": "e", "recovered": True, "missed": missed}
        self.push({"id": cmd["id"], "result": result})
        self.push(self.pub(3))


async def holder(reason: str) -> tuple[Connections, OffsetChecker, list[dict[str, Any]]]:
    """One holder subscribed to the scripted server, once it has had time to resubscribe."""
    Scripted.reason, Scripted.subscribes = reason, []
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(tornado.web.Application([("/ws", Scripted)]))
    server.add_sockets([sock])
    params = parse_params(["fanout", "--url", f"ws://127.0.0.1:{port}/ws", "--subscribers", "1"])
    plan = WorkerPlan(0, params, 0, 1, 0, 0.0, 0.0, 1.0)
    here, _ = multiprocessing.Pipe()
    conns = Connections(plan, here)
    client = await conns.open_client("h0", "news")
    for _ in range(100):  # the pushes, and the resubscribe when there is one
        await asyncio.sleep(0.02)
        if isinstance(client.tag, OffsetChecker) and client.tag.received >= 3:
            break
    await asyncio.gather(*conns.reconnecting)
    client.close()
    server.stop()
    here.close()
    assert isinstance(client.tag, OffsetChecker)
    return conns, client.tag, Scripted.subscribes


async def test_insufficient_state_resubscribes_from_the_check() -> None:
    conns, checker, subscribes = await holder("insufficient_state")
    assert len(subscribes) == 2
    assert subscribes[1]["since"] == {"offset": 1, "epoch": "e"}
    assert (checker.received, checker.next) == (3, 4)  # 1 live, 2 missed, 3 live
    assert not conns.errors


async def test_a_subscription_the_server_ended_stays_ended() -> None:
    _, checker, subscribes = await holder("server")
    assert len(subscribes) == 1
    assert (checker.received, checker.next) == (1, 2)
