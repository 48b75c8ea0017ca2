"""One namespace lookup per command: the command resolves its channel's namespace once, checks
permissions with it and passes it down to the node, over WebSocket and the HTTP API alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from server.config import Config, NamespaceConfig
from tests.support import http

pytestmark = pytest.mark.asyncio

CHANNEL = "lookups"  # default namespace: history and presence on


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many times `Config.namespace_of` looked `CHANNEL` up since the last call."""
    seen: list[str] = []
    lookup = Config.namespace_of

    def counting(self: Config, channel: str) -> NamespaceConfig:
        seen.append(channel)
        return lookup(self, channel)

    monkeypatch.setattr(Config, "namespace_of", counting)

    def count() -> int:
        n = seen.count(CHANNEL)
        seen.clear()
        return n

    return count


async def test_each_websocket_command_looks_its_namespace_up_once(app, ws_connect, lookups):
    c = await ws_connect()
    await c.ok("subscribe", channel=CHANNEL)
    assert lookups() == 1
    await c.ok("publish", channel=CHANNEL, data=1)
    assert lookups() == 1
    await c.ok("history", channel=CHANNEL)
    assert lookups() == 1
    await c.ok("presence", channel=CHANNEL)
    assert lookups() == 1
    await c.ok("presence_stats", channel=CHANNEL)
    assert lookups() == 1
    reply = await c.call("publish", channel="nons:x", data=1)
    assert reply["error"]["code"] == "not_found" and "unknown namespace 'nons'" in str(reply)


async def test_each_api_command_looks_its_namespace_up_once(app, lookups):
    code, _ = await http(app, "POST", "/api/publish", {"channel": CHANNEL, "data": 1})
    assert code == 200 and lookups() == 1
    code, _ = await http(app, "POST", "/api/broadcast", {"channels": [CHANNEL], "data": 2})
    assert code == 200 and lookups() == 1
    code, _ = await http(app, "GET", f"/api/channels/{CHANNEL}/history")
    assert code == 200 and lookups() == 1
    code, _ = await http(app, "GET", f"/api/channels/{CHANNEL}/presence")
    assert code == 200 and lookups() == 1
    code, body = await http(app, "POST", "/api/publish", {"channel": "nons:x", "data": 1})
    assert code == 404 and body["error"]["message"] == "unknown namespace 'nons'"
