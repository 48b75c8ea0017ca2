"""Logout ends one session everywhere: its sockets close with 4001, in this process and others."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import tornado.httpclient
import tornado.testing

from server.config import Config
from server.protocol import Close
from server.sessions import COOKIE
from tests.fixtures.fake_providers import Browser, dev_sign_in, form_field, sign_out, ws_hello
from tests.support import API_KEY, TOKEN_SECRET, RunningServer, WsClient, http, make_config, ws_open

ROOT = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture
async def config() -> Config:
    return make_config(auth={"dev": {"enabled": True}})


async def assert_closed_4001(client: WsClient) -> None:
    push = await client.push_of("disconnect")
    assert push == {
        "push": "disconnect",
        "code": Close.UNAUTHORIZED,
        "reason": "signed out",
        "reconnect": False,
    }
    assert await client.closed() == Close.UNAUTHORIZED
    await client.close()


@pytest.mark.asyncio
async def test_logout_closes_that_sessions_sockets_only(app: RunningServer) -> None:
    laptop = await dev_sign_in(app.base_url, "ada")
    phone = await dev_sign_in(app.base_url, "Ada")  # the same user, another session
    cookie = {"Cookie": laptop.cookie_header()}
    laptop_ws = [await ws_open(app.ws_url, cookie) for _ in range(2)]
    phone_ws = await ws_open(app.ws_url, {"Cookie": phone.cookie_header()})
    user = laptop_ws[0].hello["user"]
    assert user is not None and phone_ws.hello["user"] == user
    _, minted = await http(app, "POST", "/api/tokens", {"user": user})
    token_ws = await ws_open(f"{app.ws_url}?token={minted['token']}")
    old_cookie = laptop.cookies[COOKIE]

    page = await sign_out(app.base_url, laptop)
    assert page.code == 200 and page.url == app.base_url + "/"
    assert COOKIE not in laptop.cookies and 'href="/login/dev"' in page.body
    for client in laptop_ws:
        await assert_closed_4001(client)
    assert await phone_ws.ok("ping") == {} and await token_ws.ok("ping") == {}
    laptop.cookies[COOKIE] = old_cookie  # the deleted session's cookie is worth nothing now
    assert (await ws_hello(app.ws_url, laptop))["user"] is None
    await phone_ws.close()
    await token_ws.close()


@pytest.mark.asyncio
async def test_logout_without_session_just_goes_home(app: RunningServer) -> None:
    browser = Browser()
    form = await browser.go(app.base_url + "/login/dev")  # any page with the XSRF field
    page = await browser.go(
        app.base_url + "/logout", "POST", {"_xsrf": form_field(form.body, "_xsrf")}
    )
    assert page.code == 200 and page.url == app.base_url + "/"


# -- two processes: Redis carries the disconnect, MongoDB holds the sessions ----------------------


def server_process(
    tmp: Path, name: str, redis_url: str, prefix: str, mongo_url: str, database: str
) -> tuple[subprocess.Popen[bytes], str]:
    sock, port = tornado.testing.bind_unused_port()
    sock.close()
    config = tmp / f"{name}.toml"
    config.write_text(f"""
[security]
secret = "two-process-cookie-secret-0123456789"
token_secret = "{TOKEN_SECRET}"
[api]
key = "{API_KEY}"
[redis]
url = "{redis_url}"
prefix = "{prefix}"
[mongo]
url = "{mongo_url}"
database = "{database}"
[auth.dev]
enabled = true
""")
    with (tmp / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "--config",
                str(config),
                "--dev",
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    return proc, f"http://127.0.0.1:{port}"


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    client = tornado.httpclient.AsyncHTTPClient()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if (await client.fetch(url + "/readyz", raise_error=False)).code == 200:
                return
        except OSError:
            pass  # not listening yet
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not ready: {log.read_text()}")


@pytest.fixture
def two_processes(
    tmp_path: Path, redis_url: str, redis_prefix: str, mongo_url: str
) -> Iterator[list[tuple[str, subprocess.Popen[bytes], Path]]]:
    """Two `python -m server` processes sharing one Redis and one MongoDB database."""
    database = f"test_{redis_prefix.replace('-', '_')}"
    servers = []
    for name in ("a", "b"):
        proc, url = server_process(tmp_path, name, redis_url, redis_prefix, mongo_url, database)
        servers.append((url, proc, tmp_path / f"{name}.log"))
    yield servers
    for _, proc, _ in servers:
        proc.terminate()
    for _, proc, _ in servers:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.asyncio
async def test_logout_on_one_process_closes_sockets_on_another(
    two_processes: list[tuple[str, subprocess.Popen[bytes], Path]],
) -> None:
    for server in two_processes:
        await wait_ready(*server)
    (a, _, _), (b, _, _) = two_processes
    browser = await dev_sign_in(a, "ada")
    on_a = await ws_open(a.replace("http", "ws", 1) + "/ws", {"Cookie": browser.cookie_header()})
    on_b = await ws_open(b.replace("http", "ws", 1) + "/ws", {"Cookie": browser.cookie_header()})
    assert on_b.hello["user"] == on_a.hello["user"] is not None  # the session is in MongoDB
    assert on_b.hello["node"] != on_a.hello["node"]
    assert (await sign_out(a, browser)).code == 200
    await assert_closed_4001(on_a)
    await assert_closed_4001(on_b)  # told through Redis
