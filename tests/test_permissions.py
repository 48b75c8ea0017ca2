"""Namespace and personal-channel rules for every command, whatever the credentials: a session
cookie, a connection token in the query or through `auth`, or none; and the HTTP API's key."""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import orjson
import pytest
import pytest_asyncio
import tornado.httpclient
import tornado.websocket
from cryptography.hazmat.primitives.asymmetric import rsa

from server.auth import mint_token
from server.config import Config
from tests.fixtures.fake_providers import dev_sign_in
from tests.support import TOKEN_SECRET, RunningServer, WsClient, http, make_config

Connect = Callable[..., Awaitable[WsClient]]
READS = ("subscribe", "history", "presence")


@pytest_asyncio.fixture
async def config() -> Config:
    return make_config(auth={"dev": {"enabled": True}})


async def codes(client: WsClient, channel: str, ops: tuple[str, ...] = READS) -> list[str]:
    """Each op's error code on `channel`, or "ok"; leaves no subscription behind."""
    found = []
    for op in ops:
        args: dict[str, Any] = {"channel": channel}
        if op == "publish":
            args["data"] = "x"
        reply = await client.call(op, **args)
        found.append(reply["error"]["code"] if "error" in reply else "ok")
        if op == "subscribe" and "error" not in reply:
            await client.ok("unsubscribe", channel=channel)
    return found


@pytest.mark.asyncio
async def test_session_user_gets_only_their_personal_channels(
    app: RunningServer, ws_connect: Connect
) -> None:
    ada = await ws_connect(
        headers={"Cookie": (await dev_sign_in(app.base_url, "ada")).cookie_header()}
    )
    bob = await ws_connect(
        headers={"Cookie": (await dev_sign_in(app.base_url, "bob")).cookie_header()}
    )
    mine, theirs = f"user#{ada.hello['user']}", f"user#{bob.hello['user']}"
    assert await codes(ada, mine, (*READS, "publish")) == ["ok"] * 4
    assert await codes(ada, theirs, (*READS, "publish")) == ["forbidden"] * 4
    both = f"chat:dm#{ada.hello['user']},{bob.hello['user']}"
    assert await codes(ada, both) == await codes(bob, both) == ["ok", "ok", "ok"]
    assert await ada.call("auth", token=mint_token(TOKEN_SECRET, "eve", 60)) == {
        "id": ada.next_id - 1,
        "error": {"code": "bad_request", "message": "already authenticated"},
    }


@pytest.mark.asyncio
async def test_anonymous_refused_where_the_namespace_says(ws_connect: Connect) -> None:
    anon = await ws_connect()
    assert await codes(anon, "chat:lobby", (*READS, "publish")) == ["unauthorized"] * 4
    assert await codes(anon, "user#42", (*READS, "publish")) == ["unauthorized"] * 4
    assert await codes(anon, "lobby", READS) == ["ok", "ok", "ok"]
    assert await codes(anon, "feed:news", ("subscribe", "publish")) == ["ok", "forbidden"]


@pytest.mark.asyncio
async def test_signed_in_user_may_use_members_only_namespaces(
    app: RunningServer, ws_connect: Connect
) -> None:
    ada = await ws_connect(
        headers={"Cookie": (await dev_sign_in(app.base_url, "ada")).cookie_header()}
    )
    assert await codes(ada, "chat:lobby", (*READS, "publish")) == ["ok"] * 4
    assert await codes(ada, "feed:news", ("publish",)) == ["forbidden"]  # HTTP API only
    status, _ = await http(app, "POST", "/api/publish", {"channel": "feed:news", "data": 1})
    assert status == 200


@pytest.mark.asyncio
async def test_token_channels_grant_only_what_they_list(ws_connect: Connect) -> None:
    c = await ws_connect(f"?token={mint_token(TOKEN_SECRET, '1', 60, channels=['user#77'])}")
    assert await codes(c, "user#77") == ["ok"] * 3
    assert await codes(c, "user#78") == ["forbidden"] * 3


def b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


@functools.cache
def refused_tokens() -> dict[str, str]:
    exp = int(time.time()) + 60
    header, _, signature = jwt.encode(
        {"sub": "1", "exp": exp}, TOKEN_SECRET, algorithm="HS256"
    ).split(".")
    none = b64({"alg": "none", "typ": "JWT"})
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "alg none": f"{none}.{b64({'sub': '1', 'exp': exp})}.",
        "alg none with a signature": f"{none}.{b64({'sub': '1', 'exp': exp})}.{signature}",
        "RS256": jwt.encode({"sub": "1", "exp": exp}, rsa_key, algorithm="RS256"),
        "expired": jwt.encode({"sub": "1", "exp": exp - 120}, TOKEN_SECRET, algorithm="HS256"),
        "claims changed": f"{header}.{b64({'sub': '2', 'exp': exp})}.{signature}",
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("label", list(refused_tokens()))
async def test_refused_tokens(app: RunningServer, ws_connect: Connect, label: str) -> None:
    bad = refused_tokens()[label]
    with pytest.raises(tornado.httpclient.HTTPClientError) as exc:
        await tornado.websocket.websocket_connect(f"{app.ws_url}?token={bad}")
    assert exc.value.code == 401
    c = await ws_connect()
    reply = await c.call("auth", token=bad)
    assert reply["error"]["code"] == "unauthorized"
    assert (await c.push_of("disconnect"))["code"] == 4001 and await c.closed() == 4001


@pytest.mark.asyncio
async def test_http_api_needs_its_key_not_a_session_and_no_xsrf(app: RunningServer) -> None:
    browser = await dev_sign_in(app.base_url, "ada")
    req = tornado.httpclient.HTTPRequest(
        app.base_url + "/api/publish",
        method="POST",
        body=b'{"channel":"lobby","data":1}',
        headers={"Cookie": browser.cookie_header()},
    )
    resp = await tornado.httpclient.AsyncHTTPClient().fetch(req, raise_error=False)
    assert resp.code == 401  # a browser's cookies never authenticate the API
    status, body = await http(app, "POST", "/api/publish", {"channel": "lobby", "data": 1})
    assert status == 200 and body["offset"] == 1  # the key alone; XSRF does not apply
