"""The pages in a real Chromium: dev sign-in, chat, presence, a restart, two processes."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.fixtures.browser import ServerProcess, sign_in

ROOM = "chat:lobby"


def open_channel(page: Page, server: ServerProcess, channel: str = ROOM) -> None:
    page.goto(f"{server.url}/channels/{channel}")
    expect(page.locator("#state")).to_have_text("connected")


def messages(page: Page) -> list[str]:
    return page.locator("#messages .text").all_text_contents()


def test_two_people_chat_and_see_each_other(servers: Callable[..., ServerProcess],
                                            new_page: Callable[..., Page]) -> None:
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
