"""static/switchboard.js in Chromium behind a proxy that refuses WebSocket upgrades: it falls
back to SSE and keeps every guarantee (live delivery, presence, recovery after a server restart,
a cut stream resumed without loss); `transports: ["sse"]` forces SSE; `encoding: "msgpack"`
speaks MessagePack over WebSocket."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.fixtures.browser import ROOT, ServerProcess, unused_port

START = """async ({ channel, options }) => {
  const { Switchboard } = await import("/static/switchboard.js");
  const log = (window.log = { states: [], pubs: [], data: [], errors: [] });
  Object.assign(log, { recoveries: [], joins: [] });
  const sb = (window.sb = new Switchboard("/ws", options));
  sb.on("state", (s) => log.states.push(s));
  sb.on("error", (e) => log.errors.push([e.code, e.message]));
  sb.on("recovery", (r) => log.recoveries.push(r));
  await sb.connect();
  if (channel) {
    await sb.subscribe(channel, (p) => { log.pubs.push(p.offset); log.data.push(p.data); },
      { onJoin: (j) => log.joins.push(j.client) });
  }
  return sb.hello;
}"""

#: The shipped default namespace lets only signed-in users publish; these pages sign no one in.
ANON_PUBLISH = {"SWITCHBOARD_NAMESPACES_DEFAULT_PUBLISH": "anyone"}


class UpgradeProxy:
    """tests/upgrade_proxy.py in a process of its own, in front of a server."""

    def __init__(self, upstream: ServerProcess) -> None:
        self.port = unused_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.upgrade_proxy", str(self.port), str(upstream.port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"listening"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_all(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def proxy() -> Iterator[Callable[[ServerProcess], UpgradeProxy]]:
    started: list[UpgradeProxy] = []

    def start(upstream: ServerProcess) -> UpgradeProxy:
        started.append(UpgradeProxy(upstream))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def start_client(page: Page, origin: str, channel: str | None, **options: Any) -> dict[str, Any]:
    page.goto(origin + "/healthz")  # any page of the origin without a CSP (which forbids eval)
    hello: dict[str, Any] = page.evaluate(START, {"channel": channel, "options": options})
    return hello


def wait_pubs(page: Page, count: int) -> list[int]:
    page.wait_for_function(f"window.log.pubs.length >= {count}")
    time.sleep(0.3)  # a duplicate would arrive right behind
    return list(page.evaluate("window.log.pubs"))


def test_behind_a_proxy_refusing_upgrades_the_client_falls_back_to_sse(
    servers: Callable[..., ServerProcess],
    proxy: Callable[[ServerProcess], UpgradeProxy],
    new_page: Callable[..., Page],
) -> None:
    server = servers(**ANON_PUBLISH)
    front = proxy(server)
    channel = f"room-{secrets.token_hex(3)}"
    page = new_page()
    hello = start_client(page, front.url, channel)
    assert page.evaluate("sb.transport") == "sse"
    assert page.evaluate("window.log.errors") == []
    # Live delivery, both ways, and through the HTTP API.
    server.publish(channel, {"from": "api", "text": "naïve ☃"})
    ack = page.evaluate(f"sb.publish({channel!r}, {{ from: 'page' }})")
    assert wait_pubs(page, 2) == [1, 2] and ack["offset"] == 2
    assert page.evaluate("window.log.data") == [
        {"from": "api", "text": "naïve ☃"},
        {"from": "page"},
    ]
    # Presence and joins with a WebSocket client of the same server (not behind the proxy).
    other = new_page()
    other_hello = start_client(other, server.url, channel)
    assert other.evaluate("sb.transport") == "websocket"
    page.wait_for_function(f"window.log.joins.includes({other_hello['client']!r})")
    who = page.evaluate(f"sb.presence({channel!r})")
    assert set(who["clients"]) == {hello["client"], other_hello["client"]}
    assert wait_pubs(other, 0) == []
    page.evaluate(f"sb.publish({channel!r}, 'to both')")
    assert wait_pubs(other, 1) == [3] and wait_pubs(page, 3) == [1, 2, 3]
    # Errors come back as over WebSocket.
    code = page.evaluate("sb.publish('feed:news', 1).then(() => 'ok', (e) => e.code)")
    assert code == "forbidden"


def test_over_sse_a_server_restart_is_recovered_exactly_once_in_order(
    servers: Callable[..., ServerProcess],
    proxy: Callable[[ServerProcess], UpgradeProxy],
    new_page: Callable[..., Page],
) -> None:
    server = servers(**ANON_PUBLISH)
    front = proxy(server)
    channel = f"room-{secrets.token_hex(3)}"
    page = new_page()
    start_client(page, front.url, channel, minDelayMs=200, maxDelayMs=1000)
    for n in range(3):
        server.publish(channel, n)
    assert wait_pubs(page, 3) == [1, 2, 3]
    server.stop()
    page.wait_for_function("window.sb.state === 'reconnecting'", timeout=15_000)
    server.start()
    server.publish(channel, 3)
    server.publish(channel, 4)
    page.wait_for_function("window.sb.state === 'connected'", timeout=25_000)
    server.publish(channel, 5)
    got = wait_pubs(page, 6)
    assert got[:3] == [1, 2, 3]
    assert got[3] > 3 and got[3:] == [got[3], got[3] + 1, got[3] + 2]
    assert page.evaluate("window.log.recoveries") == [{"channel": channel, "recovered": True}]
    assert page.evaluate("sb.transport") == "sse"


def test_a_cut_event_stream_resumes_the_same_session_without_loss(
    servers: Callable[..., ServerProcess],
    proxy: Callable[[ServerProcess], UpgradeProxy],
    new_page: Callable[..., Page],
) -> None:
    server = servers(**ANON_PUBLISH)
    front = proxy(server)
    channel = f"room-{secrets.token_hex(3)}"
    page = new_page()
    hello = start_client(page, front.url, channel, transports=["sse"])
    server.publish(channel, "before")
    assert wait_pubs(page, 1) == [1]
    for round_ in range(2):
        front.cut_all()  # the browser reconnects the stream by itself, with Last-Event-ID
        for n in range(3):
            server.publish(channel, f"cut {round_} {n}")
    got = wait_pubs(page, 7)
    assert got == [1, 2, 3, 4, 5, 6, 7]
    # The same session all along: no new hello, no resubscription, nothing to recover.
    assert page.evaluate("sb.hello.client") == hello["client"]
    assert page.evaluate("window.log.recoveries") == []
    assert "reconnecting" not in page.evaluate("window.log.states")
    assert page.evaluate("sb.publish('lobby', 'still here').then((r) => r.offset)") == 1


def test_sse_can_be_forced_and_close_ends_the_session_at_once(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers(**ANON_PUBLISH)
    channel = f"room-{secrets.token_hex(3)}"
    page = new_page()
    start_client(page, server.url, channel, transports=["sse"])
    assert page.evaluate("sb.transport") == "sse"
    server.publish(channel, 1)
    assert wait_pubs(page, 1) == [1]
    assert server.api("GET", "/api/stats")["total"]["connections"] == 1
    page.evaluate("sb.close()")
    deadline = time.monotonic() + 5
    while server.api("GET", "/api/stats")["total"]["connections"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.api("GET", "/api/stats")["total"]["connections"] == 0


def test_msgpack_encoding_in_the_browser(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers(**ANON_PUBLISH)
    channel = f"room-{secrets.token_hex(3)}"
    page = new_page()
    start_client(page, server.url, channel, encoding="msgpack")
    assert page.evaluate("sb.transport") == "websocket"
    assert page.evaluate("sb._ws.ws.protocol") == "switchboard.msgpack"
    value = {"text": "naïve ☃ 𝄞", "n": [0, -1, 1.5, 2**40, None, True], "deep": {"": []}}
    server.publish(channel, value)
    page.evaluate(f"sb.publish({channel!r}, {{ from: 'page', big: 2 ** 53 - 1 }})")
    assert wait_pubs(page, 2) == [1, 2]
    assert page.evaluate("window.log.data") == [value, {"from": "page", "big": 2**53 - 1}]
    history = page.evaluate(f"sb.history({channel!r})")
    assert [p["data"] for p in history["publications"]] == page.evaluate("window.log.data")
