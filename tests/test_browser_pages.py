"""The pages in a real Chromium: dev sign-in, chat, presence, a restart, two processes."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.fixtures.browser import ServerProcess, sign_in

ROOM = "chat:lobby"


def open_channel(page: Page, server: ServerProcess, channel: str = ROOM) -> None:
    page.goto(f"{server.url}/channels/{channel}")
    expect(page.locator("#state")).to_have_text("connected")
    expect(page.locator("#presence li")).not_to_have_count(0)  # subscribed: it is listed


def messages(page: Page) -> list[str]:
    return page.locator("#messages .text").all_text_contents()


def test_two_people_chat_and_see_each_other(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    ada, bob = new_page(), new_page(width=390, height=844)  # a desktop and a phone
    sign_in(ada, server, "Ada")
    sign_in(bob, server, "Bob")
    open_channel(ada, server)
    open_channel(bob, server)
    expect(ada.locator("#presence li")).to_have_text(["Ada", "Bob"], ignore_case=True)
    expect(bob.locator("#presence li")).to_have_count(2)

    ada.fill("#text", "hello <b>Bob</b>")
    ada.press("#text", "Enter")
    expect(bob.locator("#messages li").last).to_contain_text("hello <b>Bob</b>")
    assert bob.locator("#messages b").count() == 0  # text, never markup
    bob.fill("#text", "hi Ada")
    bob.click("#composer button")
    expect(ada.locator("#messages .text")).to_have_text(["hello <b>Bob</b>", "hi Ada"])
    expect(ada.locator("#messages .who").last).to_have_text("Bob")

    bob.close()
    expect(ada.locator("#presence li")).to_have_text(["Ada"])


def test_restart_while_open_shows_each_message_once(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    ada = new_page()
    sign_in(ada, server, "Ada")
    open_channel(ada, server)
    server.publish(ROOM, {"text": "before"})
    expect(ada.locator("#messages .text")).to_have_text(["before"])

    server.stop()
    expect(ada.locator("#state")).to_contain_text("reconnecting")
    ada.evaluate("document.body.dataset.marker = 'same page'")  # no reload may happen
    server.start()
    server.publish(ROOM, {"text": "during"})  # before the page is back, most of the time
    expect(ada.locator("#state")).to_have_text("connected", timeout=25_000)
    server.publish(ROOM, {"text": "after"})
    expect(ada.locator("#messages .text")).to_have_text(["before", "during", "after"])
    assert ada.evaluate("document.body.dataset.marker") == "same page"


def test_hidden_page_catches_up_when_restored(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    page = new_page()
    open_channel(page, server, "lobby")
    server.publish("lobby", {"text": "seen"})
    expect(page.locator("#messages .text")).to_have_text(["seen"])
    cdp = page.context.new_cdp_session(page)
    cdp.send("Page.setWebLifecycleState", {"state": "frozen"})  # what a hidden tab may get
    server.stop()
    server.start()
    server.publish("lobby", {"text": "while hidden"})
    cdp.send("Page.setWebLifecycleState", {"state": "active"})
    expect(page.locator("#state")).to_have_text("connected", timeout=25_000)
    server.publish("lobby", {"text": "back"})
    expect(page.locator("#messages .text")).to_have_text(["seen", "while hidden", "back"])


def test_pages_on_two_processes_talk_through_redis(
    servers: Callable[..., ServerProcess],
    new_page: Callable[..., Page],
    redis_url: str,
    redis_prefix: str,
) -> None:
    env = {"SWITCHBOARD_REDIS_URL": redis_url, "SWITCHBOARD_REDIS_PREFIX": redis_prefix}
    one, two = servers(**env), servers(**env)
    ada, bob = new_page(), new_page()
    sign_in(ada, one, "Ada")
    sign_in(bob, two, "Bob")
    open_channel(ada, one)
    open_channel(bob, two)
    ada.fill("#text", "from process one")
    ada.press("#text", "Enter")
    expect(bob.locator("#messages .text")).to_have_text(["from process one"])
    bob.fill("#text", "from process two")
    bob.press("#text", "Enter")
    expect(ada.locator("#messages .text")).to_have_text(["from process one", "from process two"])
    expect(ada.locator("#presence li")).to_have_count(2)


def test_home_counts_subscribers_live(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    home = new_page(width=390, height=844)
    home.goto(server.url + "/")
    lobby = home.locator('#channels li[data-channel="lobby"] .count')
    expect(lobby).to_have_text("0 here")
    reader = new_page()
    open_channel(reader, server, "lobby")
    expect(lobby).to_have_text("1 here")
    reader.close()
    expect(lobby).to_have_text("0 here")


def test_admin_dashboard_is_live_and_for_admins_only(
    servers: Callable[..., ServerProcess], new_page: Callable[..., Page]
) -> None:
    server = servers()
    someone = new_page()
    sign_in(someone, server, "Eve")
    assert someone.goto(server.url + "/admin").status == 403
    assert someone.goto(server.url + "/admin/token").status == 403

    admin = new_page()
    sign_in(admin, server, "Root")
    admin.goto(server.url + "/admin")
    expect(admin.locator("#state")).to_have_text("connected")
    card = admin.locator(".process")
    expect(card).to_have_count(1)
    connections = card.locator("dd").first
    expect(connections).to_have_text(re.compile(r"^[1-9]"))  # the dashboard's own, at least
    before = int(connections.inner_text())
    open_channel(someone, server, "lobby")
    expect(connections).to_have_text(str(before + 1))
    point = r"[\d.]+,[\d.]+"
    expect(card.locator("polyline.in")).to_have_attribute("points", re.compile(rf"{point} {point}"))
