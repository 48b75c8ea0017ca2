"""Config loading: one test per kind of mistake, env overrides, placeholders, the CLI's exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server import config as config_mod
from server.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {
    "security": {
        "secret": "Xq3v9LmT0pRz7KwB2nYc5HdJ8sFg1QaE4uVb6NiOtMk",
        "token_secret": "P7dK2mW9xR4tL1qZ8vB3nC6yH0jF5gS2aE9uT4iO7wQ",
    },
    "api": {"key": "aZ4kP9wQ2mX7tR1vL8nB3cY6hJ0dF5gS2eU9iO4pT7y"},
    "mongo": {"url": "memory:"},
}


def load(data: dict, env: dict | None = None, dev: bool = False) -> config_mod.Config:
    merged = {**SECRETS, **data}
    return config_mod.from_dict(merged, env or {}, dev)


def test_shipped_config_loads_in_dev_mode():
    cfg = config_mod.load(ROOT / "config.toml", env={}, dev=True)
    assert cfg.server.port == 8000 and cfg.namespace("default") is not None
    assert cfg.namespace("chat").publish == "authenticated"


def test_shipped_placeholders_refused_outside_dev():
    with pytest.raises(ConfigError, match=r"security.secret: still the shipped placeholder.*--dev"):
        config_mod.load(ROOT / "config.toml", env={}, dev=False)


def test_unknown_section():
    with pytest.raises(ConfigError, match=r"^sever: unknown section"):
        load({"sever": {}})


def test_unknown_key():
    with pytest.raises(ConfigError, match=r"^server.prot: unknown key \(allowed: .*port"):
        load({"server": {"prot": 1}})


def test_wrong_type():
    with pytest.raises(ConfigError, match=r"^server.port: must be an integer, got 'x'"):
        load({"server": {"port": "x"}})


def test_bool_is_not_an_integer():
    with pytest.raises(ConfigError, match=r"^server.max_connections: must be an integer"):
        load({"server": {"max_connections": True}})


def test_impossible_value():
    with pytest.raises(ConfigError, match=r"^server.port: must be an integer from 0 to 65535"):
        load({"server": {"port": 70000}})


def test_namespace_bad_publish_mode():
    with pytest.raises(ConfigError, match=r"^namespaces.chat.publish: must be anyone or "):
        load({"namespaces": {"chat": {"publish": "everyone"}}})


def test_namespace_unknown_key():
    with pytest.raises(ConfigError, match=r"^namespaces.chat.histroy_size: unknown key"):
        load({"namespaces": {"chat": {"histroy_size": 1}}})


def test_short_secret():
    with pytest.raises(ConfigError, match=r"^security.token_secret: must be at least 32"):
        load({"security": {"secret": "s" * 32, "token_secret": "short"}})


def test_bad_redis_url():
    with pytest.raises(ConfigError, match=r"^redis.url: must be empty"):
        load({"redis": {"url": "http://x"}})


def test_env_overrides_file():
    env = {
        "SWITCHBOARD_SERVER_PORT": "9001",
        "SWITCHBOARD_NAMESPACES_CHAT_PRESENCE": "false",
        "SWITCHBOARD_SECURITY_ALLOWED_ORIGINS": "https://a.example, https://b.example",
    }
    cfg = load({"server": {"port": 1}, "namespaces": {"chat": {"presence": True}}}, env)
    assert cfg.server.port == 9001
    assert cfg.namespace("chat").presence is False
    assert cfg.security.allowed_origins == ("https://a.example", "https://b.example")


def test_env_wrong_type_names_the_variable():
    with pytest.raises(ConfigError, match=r"server.port \(from SWITCHBOARD_SERVER_PORT\): must be"):
        load({}, {"SWITCHBOARD_SERVER_PORT": "eighty"})


def test_default_namespace_always_exists():
    cfg = load({"namespaces": {"x": {}}})
    assert set(cfg.namespaces) == {"x", "default"}


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_cli_config_error_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "eighty"\n')
    res = run_cli("--config", str(bad), "--dev")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "switchboard: config error: server.port: must be an integer, got 'eighty'"
    ]


def test_cli_invalid_toml_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    res = run_cli("--config", str(bad))
    assert res.returncode == 2 and "not valid TOML" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_placeholders_refused_without_dev():
    res = run_cli("--config", "config.toml")
    assert res.returncode == 2 and "--dev" in res.stderr and "Traceback" not in res.stderr


def test_cli_missing_file_exits_2():
    res = run_cli("--config", "/nonexistent.toml")
    assert res.returncode == 2 and "config file not found" in res.stderr
