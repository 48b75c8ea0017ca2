"""Safe defaults: what start-up refuses outside --dev, and the embedded server's exposure."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from server import assets
from server import config as config_mod
from server.config import ConfigError, estimated_bits
from server.store.embedded import LOCK_FILE, EmbeddedMongo
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
STRONG = {
    "security": {
        "secret": "Xq3v9LmT0pRz7KwB2nYc5HdJ8sFg1QaE4uVb6NiOtMk",
        "token_secret": "P7dK2mW9xR4tL1qZ8vB3nC6yH0jF5gS2aE9uT4iO7wQ",
    },
    "api": {"key": "aZ4kP9wQ2mX7tR1vL8nB3cY6hJ0dF5gS2eU9iO4pT7y"},
    "mongo": {"url": "mongodb://db.example:27017/"},
}
MONGO_LINE = (
    'mongo.url: set [mongo] url to your MongoDB, or url = "embedded" to run the embedded server'
)


def load(dev: bool = False, **sections: dict) -> config_mod.Config:
    data = {k: {**STRONG.get(k, {}), **sections.get(k, {})} for k in {*STRONG, *sections}}
    return config_mod.from_dict(data, env={}, dev=dev)


def test_strong_config_loads():
    cfg = load()
    assert cfg.server.idle_timeout_s == 30 and cfg.server.body_timeout_s == 30
    assert cfg.server.trusted_proxies == () and cfg.security.secure_cookies == "auto"
    assert cfg.limits.sockets_per_ip == 1000 and cfg.limits.connects_per_ip_per_s == 50


def test_equal_secrets_refused_even_in_dev():
    same = STRONG["security"]["secret"]
    for dev in (False, True):
        with pytest.raises(ConfigError, match=r"^security.token_secret: must differ"):
            load(dev, security={"token_secret": same})


@pytest.mark.parametrize(
    "weak",
    ["a" * 32, "abcdefghijklmnopqrstuvwxyz0123456789", "ab" * 30, "0123456789abcdef" * 2],
)
def test_guessable_secrets_refused(weak):
    assert estimated_bits(weak) < 128
    with pytest.raises(ConfigError, match=r"^security.secret: too guessable"):
        load(security={"secret": weak})
    with pytest.raises(ConfigError, match=r"^api.key: too guessable"):
        load(api={"key": weak})
    assert load(True, security={"secret": weak})  # --dev takes anything


@pytest.mark.parametrize(
    "placeholder",
    ["CHANGE-ME-cookie-secret-Xq3v9LmT0pRz7KwB2nYc5Hd", "Change_Me_9LmT0pRz7KwB2nYc5HdJ8s"],
)
def test_placeholders_refused_in_any_case(placeholder):
    with pytest.raises(ConfigError, match=r"^security.token_secret: still the shipped placeholder"):
        load(security={"token_secret": placeholder})


def test_empty_mongo_url_refused_outside_dev():
    with pytest.raises(ConfigError) as exc:
        load(mongo={"url": ""})
    assert str(exc.value) == MONGO_LINE
    assert load(mongo={"url": "embedded"}).mongo.url == "embedded"
    assert load(True, mongo={"url": ""}).mongo.url == ""  # --dev: embedded, as `make run`
    with pytest.raises(ConfigError, match=r"^mongo.embedded_port: must be an integer from 0"):
        load(mongo={"url": "embedded", "embedded_port": 70000})


def test_cli_empty_mongo_url_stops_with_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    sec, api = STRONG["security"], STRONG["api"]
    cfg.write_text(
        f'[security]\nsecret = "{sec["secret"]}"\ntoken_secret = "{sec["token_secret"]}"\n'
        f'[api]\nkey = "{api["key"]}"\n'
    )
    res = run_cli("--config", str(cfg))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"switchboard: config error: {MONGO_LINE}"]


def test_login_providers_need_base_url_outside_dev():
    github = {"github": {"client_id": "id", "client_secret": "secret"}}
    with pytest.raises(ConfigError, match=r"^auth.base_url: set the public URL"):
        load(auth=github)
    oidc = {
        "oidc": {"corp": {"issuer": "https://id.example", "client_id": "c", "client_secret": "s"}}
    }
    with pytest.raises(ConfigError, match=r"^auth.base_url"):
        load(auth=oidc)
    assert load(auth={**github, "base_url": "https://chat.example.com"})
    assert load(True, auth=github)  # --dev: from the (loopback) request


def test_dev_refuses_non_loopback_hosts():
    for host in ("0.0.0.0", "192.0.2.1", "example.com", "::"):
        with pytest.raises(ConfigError, match=r"^server.host: --dev serves only a loopback"):
            load(True, server={"host": host})
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert load(True, server={"host": host})
    assert load(False, server={"host": "0.0.0.0"})


def test_cli_dev_with_public_host_exits_2():
    res = run_cli("--dev", "--host", "0.0.0.0")
    assert res.returncode == 2 and "--dev serves only a loopback host" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("server", "idle_timeout_s", 0, "a number of seconds from 0 to 3600"),
        ("server", "body_timeout_s", 7200, "a number of seconds from 0 to 3600"),
        ("server", "max_sockets", -1, "0 \\(from the open-files limit\\)"),
        ("server", "trusted_proxies", ["10.0.0.0/33"], "a list of addresses or CIDRs"),
        ("server", "trusted_proxies", ["proxy.local"], "a list of addresses or CIDRs"),
        ("security", "secure_cookies", "never", "auto or always"),
        ("limits", "sockets_per_ip", 0, "a positive integer"),
        ("limits", "connects_per_ip_per_s", 0, "a positive number"),
        ("limits", "publish_bytes_burst", 0, "a positive integer"),
    ],
)
def test_new_keys_are_validated(section, key, value, message):
    with pytest.raises(ConfigError, match=rf"^{section}.{key}: must be {message}"):
        load(**{section: {key: value}})


def test_trusted_proxies_accept_addresses_and_cidrs():
    cfg = load(server={"trusted_proxies": ["10.0.0.0/8", "192.0.2.7", "fd00::/8"]})
    assert cfg.server.trusted_proxies == ("10.0.0.0/8", "192.0.2.7", "fd00::/8")


def test_shipped_default_namespace_lets_only_signed_in_clients_publish():
    cfg = config_mod.load(assets.SAMPLE_CONFIG, env={}, dev=True)
    assert cfg.namespaces["default"].publish == "authenticated"


def test_embedded_server_is_private(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    port = free_port()
    embedded = EmbeddedMongo(data, port=port)
    try:
        assert embedded.start() == f"mongodb://127.0.0.1:{port}/"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / LOCK_FILE).stat().st_mode) == 0o600
    finally:
        embedded.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
