"""static/switchboard.js itself, in Chromium against a real server process: error replies,
backoff, resubscription with `since` and dedupe across a restart, dead-connection detection by
pings, and the server's `reconnect: false`."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page

from tests.fixtures.browser import ServerProcess

# Loads the library into a page of the server's origin and keeps what it reports on window.log.
START = """async ({ channel, options }) => {
  const { Switchboard } = await import("/static/switchboard.js");
  const log = (window.log = { states: [], pubs: [], errors: [], recoveries: [] });
  const sb = (window.sb = new Switchboard("/ws", options));
  sb.on("state", (s, info) => log.states.push([s, info.retryInMs ?? null]));
  sb.on("error", (e) => log.errors.push([e.code, e.message]));
  sb.on("recovery", (r) => log.recoveries.push(r));
  await sb.connect();
  if (channel) await sb.subscribe(channel, (p) => log.pubs.push(p.offset));
}"""


def start_client(
    page: Page, server: ServerProcess, channel: str | None = None, **options: Any
) -> None:
    page.goto(server.url + "/healthz")  # any page of the origin without a CSP (which forbids eval)
    page.evaluate(START, {"channel": channel, "options": options})


def wait_state(page: Page, state: str, timeout_ms: int = 25_000) -> None:
    page.wait_for_function(f"window.sb.state === {state!r}", timeout=timeout_ms)


def pubs(page: Page) -> list[int]:
    return list(page.evaluate("window.log.pubs"))


def wait_pubs(page: Page, count: int) -> list[int]:
    page.wait_for_function(f"window.log.pubs.length >= {count}")
    time.sleep(0.3)  # a duplicate would arrive right behind
    return pubs(page)


def test_every_call_rejects_with_the_servers_code(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    page = new_page()
    start_client(page, servers(), "lobby")
    codes = page.evaluate("""async () => {
      const code = (p) => p.then(() => "ok", (e) => `${e.code}: ${e.message ? "msg" : ""}`);
      return [
        await code(sb.publish("feed:news", 1)),
        await code(sb.subscribe("chat:lobby", () => {})),
        await code(sb.history("feed:news")),
        await code(sb.presence("nowhere:x")),
        await code(sb.subscribe("lobby", () => {})),
        await code(sb.publish("lobby", { text: "anonymous" })),
        await code(sb.history("lobby")),
      ];
    }""")
    assert codes == [
        "forbidden: msg",
        "unauthorized: msg",
        "disabled: msg",
        "not_found: msg",
        "bad_request: msg",
        "unauthorized: msg",  # the shipped default namespace: signed-in publishers only
        "ok",
    ]


def test_restart_resubscribes_with_since_exactly_once_in_order(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    channel = f"room-{secrets.token_hex(3)}"
    page = new_page()
    start_client(page, server, channel, minDelayMs=200, maxDelayMs=1000)
    for n in range(3):
        server.publish(channel, n)
    assert wait_pubs(page, 3) == [1, 2, 3]
    server.stop()
    wait_state(page, "reconnecting")
    server.start()
    server.publish(channel, 3)
    server.publish(channel, 4)
    wait_state(page, "connected")
    server.publish(channel, 5)
    got = wait_pubs(page, 6)
    assert got[:3] == [1, 2, 3]
    # The restarted server goes on past every offset it may have handed out unstored: none reused.
    assert got[3] > 3 and got[3:] == [got[3], got[3] + 1, got[3] + 2]
    assert page.evaluate("window.log.recoveries") == [{"channel": channel, "recovered": True}]
    delays = [ms for state, ms in page.evaluate("window.log.states") if ms]
    # Jittered, within the cap (1,000 ms); the first may be the draining server's delay (up to
    # 1,000 ms, server/process/drain.py) plus the client's extra of up to half of it.
    assert delays and all(0 <= ms <= 1000 for ms in delays[1:]) and 0 <= delays[0] <= 1500


def test_a_silent_server_is_detected_by_missed_pings(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()  # ping_interval 1 s (tests/fixtures/browser.py)
    channel = f"room-{secrets.token_hex(3)}"
    page = new_page()
    start_client(
        page,
        server,
        channel,
        pingTimeoutMs=1000,
        connectTimeoutMs=1500,
        minDelayMs=200,
        maxDelayMs=1000,
    )
    server.publish(channel, "first")
    assert wait_pubs(page, 1) == [1]
    server.pause()  # the socket stays open; nothing answers
    try:
        wait_state(page, "reconnecting", timeout_ms=8000)
    finally:
        server.resume()
    wait_state(page, "connected")
    server.publish(channel, "second")
    assert wait_pubs(page, 2) == [1, 2]


def test_reconnect_false_is_final(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    token = server.api("POST", "/api/tokens", {"user": "u-final", "ttl_s": 600})["token"]
    page = new_page()
    start_client(page, server, "lobby", token=token, minDelayMs=100)
    assert server.api("POST", "/api/disconnect", {"user": "u-final"}) == {"disconnected": 1}
    wait_state(page, "disconnected")
    time.sleep(1.0)  # well past any retry it might wrongly make
    assert page.evaluate("window.sb.state") == "disconnected"
    assert [s for s, _ in page.evaluate("window.log.states")][-1] == "disconnected"
    assert page.evaluate("window.log.errors")[-1][0] == "unauthorized"
    rejected = page.evaluate("sb.publish('lobby', 1).then(() => 'ok', (e) => e.code)")
    assert rejected == "unavailable"
