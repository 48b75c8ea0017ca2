"""The finished pages in a real Chromium: authors and times (after a reload too), one line per
person in presence, pending messages sent after a reconnect, members-only channels for signed-out
visitors, styled errors, the admin pages and their actions; and a screenshot of every page at
phone (390 × 844) and desktop size in tests/artifacts/pages/."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.fixtures.browser import ARTIFACTS, ServerProcess, sign_in

ROOM = "chat:room"
PHONE = (390, 844)
DESKTOP = (1280, 800)
SHOTS = ARTIFACTS / "pages"
CLOCK = re.compile(r"\d{1,2}:\d{2}")


def open_channel(page: Page, server: ServerProcess, channel: str = ROOM) -> None:
    page.goto(f"{server.url}/channels/{channel}")
    expect(page.locator("#state")).to_have_text("connected")
    expect(page.locator("#presence li:not(.empty)")).not_to_have_count(0)


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_authors_and_times_survive_a_reload_and_two_tabs_are_one_person(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    ada = new_page()
    sign_in(ada, server, "Ada")
    ada.goto(f"{server.url}/channels/{ROOM}")
    expect(ada.locator("#messages li.empty")).to_have_text("No messages yet. Say hello!")
    say(ada, "first words")
    last = ada.locator("#messages li").last
    expect(last.locator(".who")).to_have_text("Ada")
    expect(last.locator("time")).to_have_text(CLOCK)

    second_tab = ada.context.new_page()
    open_channel(second_tab, server)
    expect(ada.locator("#presence li")).to_have_count(1)  # Ada once, not once per tab
    expect(ada.locator("#presence li")).to_contain_text("2 tabs")

    ada.reload()
    expect(ada.locator("#state")).to_have_text("connected")
    row = ada.locator("#messages li").first
    expect(row.locator(".who")).to_have_text("Ada")  # the name, not a 24-character id
    expect(row.locator("time")).to_have_text(CLOCK)
    expect(row.locator(".text")).to_have_text("first words")
    second_tab.close()
    expect(ada.locator("#presence li")).to_have_text(["Ada"])


def test_messages_typed_while_disconnected_are_sent_after_reconnecting(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    ada = new_page(*PHONE)
    sign_in(ada, server, "Ada")
    open_channel(ada, server)
    reconnect = ada.locator("#reconnect")
    expect(reconnect).to_be_hidden()

    server.stop()
    expect(ada.locator("#state")).to_contain_text("reconnecting")
    expect(reconnect).to_be_visible()
    say(ada, "typed while away")
    say(ada, "and another")
    expect(ada.locator("#messages li.pending .text")).to_have_text(
        ["typed while away", "and another"]
    )
    expect(ada.locator("#error")).to_be_hidden()  # kept, not refused

    server.start()
    # Rather than waiting out the backoff (the client may also have got there by itself
    # meanwhile, hiding the button: the admin test clicks it where nothing else would).
    ada.evaluate("document.getElementById('reconnect').click()")
    expect(ada.locator("#state")).to_have_text("connected", timeout=15_000)
    expect(reconnect).to_be_hidden()
    expect(ada.locator("#messages li.pending")).to_have_count(0)
    expect(ada.locator("#messages .text")).to_have_text(["typed while away", "and another"])
    history = server.api("GET", "/api/channels/chat:room/history")["publications"]
    assert [p["data"]["text"] for p in history] == ["typed while away", "and another"]


def test_signed_out_visitors_and_unknown_urls_get_finished_pages(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    page = new_page(*PHONE)
    page.goto(f"{server.url}/channels/{ROOM}")
    expect(page.locator("#signin")).to_contain_text("Sign in to read and talk")
    expect(page.locator("#signin a.button").first).to_have_attribute("href", "/login/dev")
    assert page.locator("#composer, #text, #messages").count() == 0  # no composer to type in

    page.goto(f"{server.url}/channels/feed:news")  # anyone reads, only the server posts
    expect(page.locator("#composer-note")).to_have_text("Only the server posts in this channel.")
    expect(page.locator("#presence li.empty")).to_have_text("Presence is off in this namespace.")

    for path in ("/no/such/page", "/static/missing.js", "/channels/bad%20name"):
        response = page.goto(server.url + path)
        assert response is not None and response.status == 404, path
        expect(page.locator(".problem h1")).to_have_text("Page not found")
        expect(page.locator("link[rel=icon]")).to_have_count(1)
    icon = page.request.get(server.url + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/")
    api = page.request.get(server.url + "/api/nowhere")
    assert api.status == 404 and api.json()["error"]["code"] == "not_found"


def test_admin_pages_and_actions_through_the_api_under_the_session(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    eve = new_page()
    sign_in(eve, server, "Eve")
    response = eve.goto(server.url + "/admin")
    assert response is not None and response.status == 403
    expect(eve.locator(".hint")).to_contain_text('admins = ["dev:root"]')
    expect(eve.locator(".hint")).to_contain_text("dev:eve")  # who they are now
    assert eve.request.get(server.url + "/api/channels").status == 401  # not an admin

    bob = new_page(*PHONE)
    sign_in(bob, server, "Bob")
    open_channel(bob, server)
    say(bob, "hello from Bob")

    admin = new_page()
    sign_in(admin, server, "Root")
    admin.goto(server.url + "/admin")
    card = admin.locator(".process")
    expect(card).to_have_count(1)
    expect(card.locator(".where")).to_contain_text("version")
    for unit in ("msg/s", "ms", "MB"):
        expect(card.locator(f"svg.chart[aria-label$=' in {unit}'] .tick.y").first).to_have_text(
            re.compile(rf" {re.escape(unit)}$")
        )
    expect(card.locator(".tick.x").first).to_have_text(re.compile(r"\d{2}:\d{2}:\d{2}"))

    admin.click("nav.tabs >> text=Channels")
    row = admin.locator(f'#channels tr[data-channel="{ROOM}"]')
    expect(row.locator(".subscribers")).to_have_text("1")
    admin.fill("#q", "no-such-channel")
    expect(admin.locator("#empty")).to_be_visible()
    admin.fill("#q", "room")
    expect(row).to_be_visible()
    row.locator("a").click()

    expect(admin.locator("#state")).to_have_text("connected")
    expect(admin.locator("#messages li").first.locator(".who")).to_have_text("Bob")
    expect(admin.locator('#presence li[data-user]:has-text("Bob")')).to_have_count(1)

    # Without the page's XSRF token the admin's cookie alone does nothing.
    forged = admin.request.post(
        server.url + "/api/publish", data={"channel": ROOM, "data": {"text": "forged"}}
    )
    assert forged.status == 403

    admin.fill("#data", "maintenance at six")
    admin.click("#publish button")
    expect(admin.locator("#done")).to_contain_text("Published to chat:room at offset 2")
    expect(bob.locator("#messages li").last.locator(".who")).to_have_text("server")
    expect(bob.locator("#messages .text").last).to_have_text("maintenance at six")

    admin.locator('#presence li:has-text("Bob") button:has-text("Disconnect")').click()
    expect(admin.locator("#done")).to_contain_text("Disconnected Bob")
    expect(bob.locator("#state")).to_have_text("offline")
    expect(bob.locator("#error")).to_contain_text("unauthorized")
    bob.click("#reconnect")
    expect(bob.locator("#state")).to_have_text("connected")
    expect(bob.locator("#error")).to_be_hidden()  # the stale error is gone

    expect(admin.locator('#presence li:has-text("Bob")')).to_have_count(1)
    admin.locator('#presence li:has-text("Bob") button:has-text("Unsubscribe")').click()
    expect(admin.locator("#done")).to_contain_text("Unsubscribed Bob")
    expect(bob.locator("#error")).to_contain_text("unsubscribed from chat:room")
    expect(admin.locator('#presence li:has-text("Bob")')).to_have_count(0)


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_every_page_fits_and_is_screenshotted(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page], size: tuple[int, int]
) -> None:
    server = servers()
    server.publish(ROOM, {"text": "a message from the server, long enough to wrap on a phone"})
    visitor = new_page(*size)
    admin = new_page(*size)
    sign_in(admin, server, "Root")
    eve = new_page(*size)
    sign_in(eve, server, "Eve")
    pages: list[tuple[str, Page, str]] = [
        ("admin-not-for-you", eve, "/admin"),
        ("home-signed-out", visitor, "/"),
        ("channel-members-only-signed-out", visitor, f"/channels/{ROOM}"),
        ("channel-empty", visitor, "/channels/lobby"),
        ("login", visitor, "/login"),
        ("dev-login", visitor, "/login/dev"),
        ("not-found", visitor, "/no/such/page"),
        ("admin-sign-in-needed", visitor, "/admin"),
        ("home", admin, "/"),
        ("channel", admin, f"/channels/{ROOM}"),
        ("admin-nodes", admin, "/admin"),
        ("admin-channels", admin, "/admin/channels"),
        ("admin-channel", admin, f"/admin/channels/{ROOM}"),
    ]
    SHOTS.mkdir(parents=True, exist_ok=True)
    width = size[0]
    for name, page, path in pages:
        page.goto(server.url + path)
        if page.locator("#state").count():
            expect(page.locator("#state")).to_have_text("connected")
        if name == "admin-nodes":
            expect(page.locator(".process .chart polyline.in")).to_have_count(1)
        if name.startswith("channel") and "signed-out" not in name:
            expect(page.locator("#messages li")).not_to_have_count(0)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{name} is {overflow}px wide at {width}px"
        shot: Path = SHOTS / f"{name}-{size[0]}x{size[1]}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 0
