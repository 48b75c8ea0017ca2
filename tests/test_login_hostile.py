"""Every hostile or broken sign-in ends on the error page with a way back and no session."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import pytest_asyncio
import tornado.testing
import tornado.web

from server import config as config_mod
from server.config import Config, ConfigError
from server.login.flow import Flow
from server.sessions import COOKIE
from tests.fixtures.fake_providers import Browser, FakeProvider, login_config, ws_hello
from tests.support import RunningServer, make_config, start_server


@pytest_asyncio.fixture
async def config(fake_provider: FakeProvider) -> Config:
    return login_config(fake_provider)


async def callback_url(app: RunningServer, browser: Browser, provider: str = "github") -> str:
    """Walk to the provider and back, stopping before the callback is requested."""
    start = await browser.fetch(f"{app.base_url}/login/{provider}")
    authorized = await browser.fetch(start.headers["Location"])
    return authorized.headers["Location"]


def assert_refused(page: Any, browser: Browser, status: int, words: str) -> None:
    assert page.code == status, (page.code, page.body)
    assert words in page.body, page.body
    assert 'href="/login"' in page.body and 'href="/"' in page.body  # a way back
    assert "Traceback" not in page.body
    assert COOKIE not in browser.cookies


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


@pytest.mark.asyncio
async def test_callback_in_another_browser_is_refused(app: RunningServer) -> None:
    url = await callback_url(app, Browser())
    victim = Browser()  # a login CSRF: the attacker's callback opened in the victim's browser
    assert_refused(await victim.go(url), victim, 400, "not started in this browser")


@pytest.mark.asyncio
async def test_forged_state_is_refused(app: RunningServer) -> None:
    browser = Browser()
    url = with_query(await callback_url(app, browser), state=secrets.token_urlsafe(32))
    assert_refused(await browser.go(url), browser, 400, "does not belong to this browser")
    assert "sb_login" not in browser.cookies  # the flow is spent either way


@pytest.mark.asyncio
async def test_missing_state_is_refused(app: RunningServer) -> None:
    browser = Browser()
    parts = urlsplit(await callback_url(app, browser))
    url = parts._replace(query=urlencode({"code": parse_qs(parts.query)["code"][0]})).geturl()
    assert_refused(await browser.go(url), browser, 400, "does not belong to this browser")


@pytest.mark.asyncio
async def test_replayed_callback_is_refused(app: RunningServer) -> None:
    browser = Browser()
    url = await callback_url(app, browser)
    flow_cookie = dict(browser.cookies)
    assert (await browser.go(url)).code == 200 and COOKIE in browser.cookies
    replay = Browser()
    replay.cookies = flow_cookie  # the same flow cookie and callback URL, captured and resent
    assert_refused(await replay.go(url), replay, 400, "already used")


@pytest.mark.asyncio
async def test_expired_flow_is_refused(app: RunningServer) -> None:
    browser = Browser()
    url = await callback_url(app, browser)
    state = parse_qs(urlsplit(url).query)["state"][0]
    old = Flow("github", state, "n", "v" * 64, time.time() - 1)
    browser.cookies["sb_login"] = tornado.web.create_signed_value(
        app.node.config.security.secret, "sb_login", old.encode()
    ).decode()
    assert_refused(await browser.go(url), browser, 400, "expired")


@pytest.mark.asyncio
async def test_tampered_flow_cookie_is_refused(app: RunningServer) -> None:
    browser = Browser()
    url = await callback_url(app, browser)
    value = browser.cookies["sb_login"]
    browser.cookies["sb_login"] = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    assert_refused(await browser.go(url), browser, 400, "not started in this browser")


@pytest.mark.asyncio
async def test_flow_of_another_provider_is_refused(app: RunningServer) -> None:
    browser = Browser()
    url = await callback_url(app, browser, "github")
    assert_refused(
        await browser.go(url.replace("/login/github/", "/login/corp/")),
        browser,
        400,
        "does not belong to this browser",
    )


@pytest.mark.asyncio
async def test_denied_consent(app: RunningServer, fake_provider: FakeProvider) -> None:
    fake_provider.knobs.deny = True
    browser = Browser()
    assert_refused(
        await browser.go(app.base_url + "/login/google"), browser, 403, "cancelled or refused"
    )


@pytest.mark.asyncio
async def test_provider_error_other_than_denial(app: RunningServer) -> None:
    browser = Browser()
    url = with_query(await callback_url(app, browser), error="server_error<script>")
    page = await browser.go(url)
    assert_refused(page, browser, 502, "could not sign you in (server_error&lt;script&gt;)")


def closed_port_url() -> str:
    sock, port = tornado.testing.bind_unused_port()
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.mark.asyncio
async def test_unreachable_providers(fake_provider: FakeProvider) -> None:
    down = closed_port_url()
    cfg = login_config(
        fake_provider,
        github={**fake_provider.github_config(), "token_url": down + "/token"},
        oidc={"down": {"issuer": down, "client_id": "c", "client_secret": "s"}},
    )
    server = await start_server(cfg)
    try:
        browser = Browser()  # OIDC: discovery fails before the browser leaves
        assert_refused(
            await browser.go(server.base_url + "/login/down"), browser, 502, "could not be reached"
        )
        browser = Browser()  # GitHub: the token exchange fails after consent
        assert_refused(
            await browser.go(server.base_url + "/login/github"),
            browser,
            502,
            "GitHub could not be reached",
        )
    finally:
        await server.stop()


NOW = int(time.time())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "knobs, words",
    [
        ({"claims": {"nonce": "not-this-flows-nonce"}}, "nonce"),
        ({"claims": {"nonce": None}}, "nonce"),
        ({"key": "other"}, "Signature verification failed"),
        ({"key": "other", "kid": "k2"}, "a key it does not publish"),
        ({"key": "other", "kid": None}, "Signature verification failed"),
        ({"claims": {"aud": "someone-else"}}, "Audience doesn"),
        ({"claims": {"aud": ["corp-client", "someone-else"]}}, "issued to another client"),
        ({"claims": {"iss": "https://evil.example"}}, "Invalid issuer"),
        ({"claims": {"exp": NOW - 3600, "iat": NOW - 7200}}, "has expired"),
        ({"key": "none"}, "signed with &#x27;none&#x27;"),
        ({"alg": "HS256"}, "signed with &#x27;HS256&#x27;"),
        ({"alg": "RS512"}, "signed with &#x27;RS512&#x27;"),  # not announced by the issuer
        ({"claims": {"sub": ""}}, "no subject"),
    ],
)
async def test_bad_id_tokens_are_refused(
    app: RunningServer, fake_provider: FakeProvider, knobs: dict[str, Any], words: str
) -> None:
    for key, value in knobs.items():
        setattr(fake_provider.knobs, key, value)
    browser = Browser()
    assert_refused(await browser.go(app.base_url + "/login/corp"), browser, 502, words)


@pytest.mark.asyncio
async def test_tampered_or_forged_session_cookie_is_anonymous(app: RunningServer) -> None:
    browser = Browser()
    await browser.go(app.base_url + "/login/github")
    assert (await ws_hello(app.ws_url, browser))["user"] is not None
    value = browser.cookies[COOKIE]
    forged = {
        "tampered": value[:-2] + ("00" if not value.endswith("00") else "11"),
        "other key": tornado.web.create_signed_value(
            "another-secret-0123456789-0123456789", COOKIE, "made-up-session"
        ).decode(),
        "unknown session": tornado.web.create_signed_value(
            app.node.config.security.secret, COOKIE, "made-up-session"
        ).decode(),
        "not signed": "made-up-session",
    }
    for label, bad in forged.items():
        browser.cookies[COOKIE] = bad
        assert (await ws_hello(app.ws_url, browser))["user"] is None, label
        page = await browser.go(app.base_url + "/")
        assert 'action="/logout"' not in page.body, label


@pytest.mark.asyncio
async def test_cross_site_logout_is_refused(app: RunningServer) -> None:
    browser = Browser()
    await browser.go(app.base_url + "/login/github")
    user = (await ws_hello(app.ws_url, browser))["user"]
    # Another site's form carries the cookies (in old browsers) but cannot know the XSRF token.
    for form in ({}, {"_xsrf": "2|00000000|" + "0" * 32 + "|1"}):
        page = await browser.go(
            app.base_url + "/logout", "POST", form, headers={"Origin": "https://evil.example"}
        )
        assert page.code == 403 and "did not come from this site" in page.body
        assert 'href="/"' in page.body
    assert (await ws_hello(app.ws_url, browser))["user"] == user  # still signed in


@pytest.mark.asyncio
async def test_dev_login_checks_its_form_and_code(app: RunningServer) -> None:
    browser = Browser()
    page = await browser.go(app.base_url + "/login/dev")
    state = parse_qs(urlsplit(page.url).query)["state"][0]
    refused = await browser.go(
        app.base_url + "/login/dev/authorize", "POST", {"state": state, "name": "mallory"}
    )  # no XSRF token
    assert refused.code == 403
    forged = f"{app.base_url}/login/dev/callback?{urlencode({'code': 'mallory', 'state': state})}"
    assert_refused(await browser.go(forged), browser, 403, "invalid or expired")


def test_dev_login_refused_outside_dev_mode() -> None:
    data = {
        "security": {"secret": "s" * 40, "token_secret": "t" * 40},
        "api": {"key": "k" * 40},
        "auth": {"dev": {"enabled": True}},
    }
    with pytest.raises(ConfigError, match=r"auth\.dev\.enabled: .*refused outside --dev"):
        config_mod.from_dict(data, env={}, dev=False)
    with pytest.raises(ConfigError, match=r"auth\.dev\.enabled"):
        config_mod.from_dict({**data, "auth": {}}, env={"SWITCHBOARD_AUTH_DEV_ENABLED": "true"})
    assert config_mod.from_dict(data, env={}, dev=True).auth.dev.enabled


@pytest.mark.asyncio
async def test_dev_provider_absent_unless_enabled() -> None:
    server = await start_server(make_config())
    try:
        browser = Browser()
        assert_refused(
            await browser.go(server.base_url + "/login/dev"),
            browser,
            404,
            "no sign-in provider called",
        )
        page = await browser.go(server.base_url + "/login/dev/authorize?state=x")
        assert page.code == 404
    finally:
        await server.stop()
