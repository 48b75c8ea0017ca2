"""The full redirect dance for each provider kind, against fake providers over real HTTP."""

from __future__ import annotations

import pytest
import pytest_asyncio
import tornado.httpserver
import tornado.testing

from server.app import build_node, make_app
from server.config import Config
from server.sessions import COOKIE
from tests.fixtures.fake_providers import Browser, FakeProvider, form_field, login_config, ws_hello
from tests.support import RunningServer, make_config, start_server


@pytest_asyncio.fixture
async def config(fake_provider: FakeProvider) -> Config:
    return login_config(fake_provider)


async def sign_in(app: RunningServer, provider: str, browser: Browser | None = None) -> Browser:
    browser = browser or Browser()
    page = await browser.go(f"{app.base_url}/login/{provider}")
    assert page.code == 200 and page.url == app.base_url + "/", page.body
    return browser


@pytest.mark.asyncio
async def test_github_dance_signs_in_with_pkce(
    app: RunningServer, fake_provider: FakeProvider
) -> None:
    browser = await sign_in(app, "github")
    sent = fake_provider.authorize_requests[-1]
    assert sent["client_id"] == "gh-client"
    assert sent["redirect_uri"] == app.base_url + "/login/github/callback"
    assert sent["code_challenge_method"] == "S256" and len(sent["state"]) >= 32
    assert all(g.used for g in fake_provider.grants.values())  # the code and verifier fitted
    assert COOKIE in browser.cookies and "sb_login" not in browser.cookies
    hello = await ws_hello(app.ws_url, browser)
    user = await app.node.store.get_user(hello["user"])
    assert user is not None
    assert (user.provider, user.subject, user.name) == ("github", "583231", "Alice")
    assert user.avatar == "https://example.org/octocat.png"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "provider, client_id", [("google", "google-client"), ("corp", "corp-client")]
)
async def test_oidc_dance_verifies_the_id_token(
    app: RunningServer, fake_provider: FakeProvider, provider: str, client_id: str
) -> None:
    browser = await sign_in(app, provider)
    sent = fake_provider.authorize_requests[-1]
    assert sent["client_id"] == client_id and sent["scope"] == "openid profile email"
    assert sent["nonce"] and sent["code_challenge_method"] == "S256"
    user = await app.node.store.get_user((await ws_hello(app.ws_url, browser))["user"])
    assert user is not None
    assert (user.provider, user.subject, user.name) == (provider, "alice-sub", "Alice")
    assert user.avatar == "https://example.org/alice.png"


@pytest.mark.asyncio
async def test_oidc_name_from_userinfo_when_the_id_token_has_none(
    app: RunningServer, fake_provider: FakeProvider
) -> None:
    fake_provider.knobs.name = None
    browser = await sign_in(app, "corp")
    user = await app.node.store.get_user((await ws_hello(app.ws_url, browser))["user"])
    assert user is not None and user.name == "Alice from userinfo"


@pytest.mark.asyncio
async def test_one_user_per_provider_identity(app: RunningServer) -> None:
    first = await ws_hello(app.ws_url, await sign_in(app, "google"))
    again = await ws_hello(app.ws_url, await sign_in(app, "google"))
    other = await ws_hello(app.ws_url, await sign_in(app, "corp"))  # same subject, other issuer
    assert first["user"] == again["user"] != other["user"]


@pytest.mark.asyncio
async def test_dev_login_takes_the_same_path(app: RunningServer) -> None:
    browser = Browser()
    page = await browser.go(app.base_url + "/login/dev")
    assert page.code == 200 and "/login/dev/authorize?state=" in page.url
    assert "sb_login" in browser.cookies  # the same flow cookie as every provider
    page = await browser.go(
        app.base_url + "/login/dev/authorize",
        "POST",
        {
            "_xsrf": form_field(page.body, "_xsrf"),
            "state": form_field(page.body, "state"),
            "name": "Grace Hopper",
        },
    )
    assert page.code == 200 and page.url == app.base_url + "/"
    assert "/login/dev/callback?code=" in browser.visited[-2]
    user = await app.node.store.get_user((await ws_hello(app.ws_url, browser))["user"])
    assert user is not None and (user.provider, user.subject, user.name) == (
        "dev",
        "grace hopper",
        "Grace Hopper",
    )


@pytest.mark.asyncio
async def test_index_shows_configured_providers_then_the_user(app: RunningServer) -> None:
    browser = Browser()
    page = await browser.go(app.base_url + "/")
    for name in ("github", "google", "corp", "dev"):
        assert f'href="/login/{name}"' in page.body
    await sign_in(app, "github", browser)
    page = await browser.go(app.base_url + "/")
    assert "Alice" in page.body and 'action="/logout"' in page.body
    assert 'name="_xsrf"' in page.body and 'href="/login/github"' not in page.body


@pytest.mark.asyncio
async def test_only_configured_providers_are_offered(fake_provider: FakeProvider) -> None:
    server = await start_server(make_config(auth={"github": fake_provider.github_config()}))
    try:
        page = await Browser().go(server.base_url + "/login")
        assert 'href="/login/github"' in page.body
        assert "google" not in page.body and "/login/dev" not in page.body
        missing = await Browser().go(server.base_url + "/login/google")
        assert missing.code == 404 and 'href="/login"' in missing.body
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_cookies_are_httponly_lax_and_secure_only_over_tls(
    app: RunningServer, fake_provider: FakeProvider
) -> None:
    browser = await sign_in(app, "github")
    session = [h for h in browser.set_cookie_headers if h.startswith(COOKIE + "=")]
    flow = [h for h in browser.set_cookie_headers if h.startswith("sb_login=")]
    for header in session + flow:
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    assert "Path=/login" in flow[0]

    # Behind a TLS-terminating proxy (xheaders), the same cookies are Secure.
    node = build_node(app.node.config)
    await node.start()
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(make_app(node), xheaders=True)
    server.add_sockets([sock])
    try:
        tls, url = Browser(), f"http://127.0.0.1:{port}/login/github"
        proxy = {"X-Forwarded-Proto": "https"}
        for _ in range(3):  # start, provider, callback; https:// is the proxy's side
            page = await tls.fetch(url.replace("https://", "http://"), headers=proxy)
            url = page.headers["Location"]
        assert url == "/" and COOKIE in tls.cookies, page.body
        sent = fake_provider.authorize_requests[-1]
        assert sent["redirect_uri"] == f"https://127.0.0.1:{port}/login/github/callback"
        session = [h for h in tls.set_cookie_headers if h.startswith(COOKIE + "=")]
        assert session and all("Secure" in h and "HttpOnly" in h for h in session)
    finally:
        server.stop()
        await node.close()
