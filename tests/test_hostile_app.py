"""Hostile clients against an in-process server: proxy headers only from trusted proxies,
Secure cookies, the CSP, publish volume, pings counted as commands, the public channel list,
and deep JSON at every depth up to 100,000."""

from __future__ import annotations

import asyncio
import logging
import os

import orjson
import pytest
import tornado.httpclient

from handlers.pages import content_security_policy
from server import auth
from server.observe.statsfeed import MAX_LISTED, StatsFeed
from tests.support import (
    TOKEN_SECRET,
    RunningServer,
    http,
    make_config,
    raw_ws_connect,
    start_server,
    ws_open,
)

XFF = "X-Forwarded-For"


async def get(url: str, headers: dict[str, str] | None = None) -> tornado.httpclient.HTTPResponse:
    req = tornado.httpclient.HTTPRequest(url, headers=headers or {}, follow_redirects=False)
    return await tornado.httpclient.AsyncHTTPClient().fetch(req, raise_error=False)


async def started(**sections: dict) -> RunningServer:
    return await start_server(make_config(**sections))


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.asyncio
async def test_forwarded_headers_count_only_from_trusted_proxies():
    tight = {"connects_per_ip_per_s": 0.01, "connects_per_ip_burst": 2}
    access = logging.getLogger("tornado.access")
    collect, level = Collect(), access.level
    access.addHandler(collect)
    access.setLevel(logging.INFO)
    direct = await started(limits=tight)
    proxied = await started(limits=tight, server={"trusted_proxies": ["127.0.0.0/8"]})
    try:
        # Untrusted: the headers change nothing; the peer's own address is what is limited.
        forged = {XFF: "6.6.6.6", "X-Real-Ip": "6.6.6.7", "X-Forwarded-Proto": "https"}
        codes = [(await get(direct.base_url + "/healthz", forged)).code for _ in range(3)]
        assert codes == [200, 200, 429]
        ips = {r.remote_ip for r in collect.records}  # type: ignore[attr-defined]
        assert ips == {"127.0.0.1"}
        collect.records.clear()

        # Trusted: the forwarded address is limited (and logged); each has its own budget.
        # The right-most address no trusted proxy added is the client's: 10.0.0.1 here.
        one = {XFF: "203.0.113.9, 10.0.0.1"}
        codes = [(await get(proxied.base_url + "/healthz", one)).code for _ in range(3)]
        assert codes == [200, 200, 429]
        response = await get(proxied.base_url + "/healthz", one)
        assert response.code == 429 and response.headers["Retry-After"].isdigit()
        assert orjson.loads(response.body)["error"]["code"] == "limit_exceeded"
        other = await get(proxied.base_url + "/healthz", {XFF: "203.0.113.10"})
        assert other.code == 200
        ips = {r.remote_ip for r in collect.records}  # type: ignore[attr-defined]
        assert ips == {"10.0.0.1", "203.0.113.10"}  # 10.0.0.1 is not a trusted proxy here
    finally:
        access.removeHandler(collect)
        access.setLevel(level)
        await direct.stop()
        await proxied.stop()


@pytest.mark.asyncio
async def test_websockets_per_forwarded_address():
    app = await started(limits={"sockets_per_ip": 2}, server={"trusted_proxies": ["127.0.0.1"]})
    try:
        headers = {XFF: "198.51.100.7"}
        a = await ws_open(app.ws_url, headers)
        b = await ws_open(app.ws_url, headers)
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await ws_open(app.ws_url, headers)
        assert refused.value.code == 429
        c = await ws_open(app.ws_url, {XFF: "198.51.100.8"})  # another address
        await a.close()
        for _ in range(50):  # the server sees the close shortly
            if app.node.hub.client_count == 2:
                break
            await asyncio.sleep(0.05)
        d = await ws_open(app.ws_url, headers)
        for client in (b, c, d):
            await client.close()
    finally:
        await app.stop()


def xsrf_cookie(response: tornado.httpclient.HTTPResponse) -> str:
    cookies = [h for h in response.headers.get_list("Set-Cookie") if h.startswith("_xsrf=")]
    assert len(cookies) == 1, response.headers
    return cookies[0]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("secure_cookies", "trusted", "secure"),
    [("auto", [], False), ("auto", ["127.0.0.1"], True), ("always", [], True)],
)
async def test_secure_cookies(secure_cookies, trusted, secure):
    app = await started(
        security={"secure_cookies": secure_cookies},
        server={"trusted_proxies": trusted},
        auth={"dev": {"enabled": True}},
    )
    try:
        page = await get(
            app.base_url + "/login/dev/authorize?state=x", {"X-Forwarded-Proto": "https"}
        )
        assert page.code == 200
        cookie = xsrf_cookie(page)
        assert ("Secure" in cookie) is secure and "HttpOnly" in cookie
    finally:
        await app.stop()


def test_csp_names_only_allowed_origins_and_avatar_hosts():
    cfg = make_config(
        security={"allowed_origins": ["https://app.example.com", "*"]},
        auth={
            "base_url": "https://chat.example.com",
            "github": {"client_id": "id", "client_secret": "s"},
            "google": {"client_id": "id", "client_secret": "s"},
            "oidc": {
                "corp": {
                    "issuer": "https://login.corp.example/realms/x",
                    "client_id": "c",
                    "client_secret": "s",
                }
            },
        },
    )
    csp = dict(part.strip().split(" ", 1) for part in content_security_policy(cfg).split(";"))
    assert csp["connect-src"] == "'self' wss://chat.example.com https://app.example.com"
    assert csp["img-src"] == (
        "'self' https://avatars.githubusercontent.com https://*.googleusercontent.com "
        "https://login.corp.example"
    )
    bare = dict(
        part.strip().split(" ", 1) for part in content_security_policy(make_config()).split(";")
    )
    assert bare["connect-src"] == "'self'" and bare["img-src"] == "'self'"


@pytest.mark.asyncio
async def test_pages_send_the_csp(app):
    page = await get(app.base_url + "/")
    assert "connect-src 'self';" in page.headers["Content-Security-Policy"]
    assert "ws:" not in page.headers["Content-Security-Policy"]


@pytest.mark.asyncio
async def test_publish_bytes_per_second_per_connection():
    app = await started(limits={"publish_bytes_per_s": 1000, "publish_bytes_burst": 3000})
    try:
        client = await ws_open(app.ws_url)
        data = "x" * 900
        for _ in range(3):
            await client.ok("publish", channel="lobby", data=data)
        refused = await client.call("publish", channel="lobby", data=data)
        assert refused["error"]["code"] == "limit_exceeded"
        await client.ok("ping")  # still connected
        await asyncio.sleep(1.0)
        await client.ok("publish", channel="lobby", data=data)  # paid back at 1,000 bytes/s
        await client.close()
    finally:
        await app.stop()


@pytest.mark.asyncio
async def test_ping_frames_count_toward_the_command_rate():
    app = await started(limits={"command_rate": 1, "command_burst": 5})
    loop = asyncio.get_running_loop()
    sock = await raw_ws_connect(app.port)
    try:
        ping = b"\x89\x80" + os.urandom(4)  # a masked ping frame, empty payload
        await loop.sock_sendall(sock, ping * 20)
        data = b""
        while True:  # pongs, the disconnect push, then a close frame with 4008
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            if not chunk:
                break
            data += chunk
            at = data.find(b"\x88")
            if at >= 0 and len(data) >= at + 4:
                assert int.from_bytes(data[at + 2 : at + 4], "big") == 4008
                break
        assert b'"code":4008' in data
    finally:
        sock.close()
        await app.stop()


@pytest.mark.asyncio
async def test_home_lists_public_channels_busiest_first(app):
    token = auth.mint_token(TOKEN_SECRET, "42", 600)
    member = await ws_open(app.ws_url + f"?token={token}")
    await member.ok("subscribe", channel="chat:secret")  # members only
    await member.ok("subscribe", channel="room#42")  # personal
    busy = [await ws_open(app.ws_url) for _ in range(3)]
    for client in busy:
        await client.ok("subscribe", channel="zz-busy")
    flooder = await ws_open(app.ws_url)
    for i in range(2 * MAX_LISTED):
        await flooder.ok("subscribe", channel=f"aa-flood-{i:03d}")
    counts = await StatsFeed(app.node).channel_counts()
    names = [c["channel"] for c in counts]
    assert len(names) == MAX_LISTED
    assert names[0] == "zz-busy" and counts[0]["subscribers"] == 3
    assert "lobby" in names  # a room is always listed
    assert not [n for n in names if n.startswith(("chat:", "sys:")) or "#" in n]
    for client in (member, flooder, *busy):
        await client.close()


DEPTHS = [1, 100, 253, 254, 255, 995, 1024, 1025, 5000, 100_000]


@pytest.mark.asyncio
@pytest.mark.parametrize("depth", DEPTHS)
async def test_any_nesting_depth_over_the_http_api(app, depth):
    for inner in (b"1", b"12345678901234567890123"):  # long digits: the exact-integer check
        data = b"[" * (depth - 1) + inner + b"]" * (depth - 1)
        raw = b'{"channel":"lobby","data":' + data + b"}"
        status, body = await http(app, "POST", "/api/publish", raw=raw)
        if depth <= 254 and inner == b"1":
            assert status == 200, body
        else:
            assert status == 400 and body["error"]["code"] == "bad_request", (depth, body)


@pytest.mark.asyncio
async def test_refusals_are_logged_at_most_once_a_second_with_a_count(app):
    access = logging.getLogger("tornado.access")
    collect, level = Collect(), access.level
    access.addHandler(collect)
    access.setLevel(logging.INFO)
    try:
        for _ in range(20):
            assert (await get(app.base_url + "/nowhere?token=SECRET")).code == 404
        await asyncio.sleep(1.2)  # the count comes at the end of the second
    finally:
        access.removeHandler(collect)
        access.setLevel(level)
    lines = [r.getMessage() for r in collect.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("404 GET /nowhere ")
    assert "(19 times in the last 1 s)" in lines[1]
    assert [r.count for r in collect.records] == [1, 19]  # type: ignore[attr-defined]
