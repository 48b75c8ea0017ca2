"""Config loading: one test per kind of mistake, env overrides, placeholders, the CLI's exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server import config as config_mod
from server.assets import SAMPLE_CONFIG
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
    cfg = config_mod.load(SAMPLE_CONFIG, env={}, dev=True)
    assert cfg.server.port == 8000 and cfg.namespaces["default"] is not None
    assert cfg.namespaces["chat"].publish == "authenticated"


def test_shipped_placeholders_refused_outside_dev():
    with pytest.raises(ConfigError, match=r"security.secret: still the shipped placeholder.*--dev"):
        config_mod.load(SAMPLE_CONFIG, env={}, dev=False)


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


def test_message_larger_than_pending_bytes_is_refused():
    with pytest.raises(
        ConfigError,
        match=r"^server.max_message_bytes: must be at most server.max_pending_bytes \(65536\), "
        r"got 65537$",
    ):
        load({"server": {"max_message_bytes": 65537, "max_pending_bytes": 65536}})
    assert load({"server": {"max_message_bytes": 65536, "max_pending_bytes": 65536}})


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
    assert cfg.namespaces["chat"].presence is False
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
    res = run_cli("--config", str(SAMPLE_CONFIG))
    assert res.returncode == 2 and "--dev" in res.stderr and "Traceback" not in res.stderr


def test_cli_missing_file_exits_2():
    res = run_cli("--config", "/nonexistent.toml")
    assert res.returncode == 2 and "config file not found" in res.stderr


def test_unknown_env_variable_suggests_the_close_key():
    with pytest.raises(ConfigError) as err:
        load({}, {"SWITCHBOARD_REDIS_URLL": "redis://127.0.0.1:6379/0"})
    assert str(err.value) == (
        "SWITCHBOARD_REDIS_URLL: unknown environment variable (did you mean SWITCHBOARD_REDIS_URL?)"
    )


def test_unknown_env_variable_far_from_any_key():
    with pytest.raises(ConfigError, match=r"^SWITCHBOARD_WHATEVER: unknown environment variable"):
        load({}, {"SWITCHBOARD_WHATEVER": "1"})


def test_env_variables_of_configured_namespaces_and_providers_are_known():
    cfg = load(
        {"namespaces": {"chat": {}}, "auth": {"oidc": {"corp": {"issuer": "https://x.example"}}}},
        {
            "SWITCHBOARD_NAMESPACES_CHAT_PRESENCE": "true",
            "SWITCHBOARD_AUTH_OIDC_CORP_LABEL": "Corp",
            "SWITCHBOARD_METRICS_TOKEN": "m" * 16,
            "OTHER_PROGRAM_SETTING": "ignored: not ours",
        },
    )
    assert cfg.namespaces["chat"].presence and cfg.auth.oidc["corp"].label == "Corp"
    with pytest.raises(ConfigError, match=r"^SWITCHBOARD_NAMESPACES_NEWS_PRESENCE: unknown"):
        load({"namespaces": {"chat": {}}}, {"SWITCHBOARD_NAMESPACES_NEWS_PRESENCE": "true"})


def test_cli_unknown_env_variable_exits_2_with_one_line():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    res = run_cli("--dev", env={**env, "SWITCHBOARD_REDIS_URLL": "redis://127.0.0.1:6379/0"})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "switchboard: config error: SWITCHBOARD_REDIS_URLL: unknown environment variable "
        "(did you mean SWITCHBOARD_REDIS_URL?)"
    ]


@pytest.mark.parametrize(
    "url,database",
    [
        ("mongodb://db1:27017/mydb", "mydb"),
        ("mongodb://u:p%40ss@db1,db2/my%20db?replicaSet=rs0", "my db"),
        ("mongodb+srv://cluster.example.com/prod?retryWrites=true", "prod"),
        ("mongodb://db1:27017/", "switchboard"),
        ("mongodb://db1:27017/?replicaSet=rs0", "switchboard"),
        ("memory:", "switchboard"),
    ],
)
def test_the_database_named_in_the_mongo_url_is_used(url, database):
    assert load({"mongo": {"url": url}}).mongo.database == database
    assert load({}, {"SWITCHBOARD_MONGO_URL": url}).mongo.database == database


def test_an_explicit_database_agreeing_with_the_url_is_fine():
    cfg = load({"mongo": {"url": "mongodb://h/app", "database": "app"}})
    assert cfg.mongo.database == "app"
    assert load({"mongo": {"url": "mongodb://h/", "database": "other"}}).mongo.database == "other"


def test_an_explicit_database_conflicting_with_the_url_is_one_error():
    msg = r"^mongo.database: 'other', but mongo.url names database 'app'; name it in one place"
    with pytest.raises(ConfigError, match=msg):
        load({"mongo": {"url": "mongodb://h/app", "database": "other"}})
    with pytest.raises(ConfigError, match=msg):
        load({"mongo": {"url": "mongodb://h/app"}}, {"SWITCHBOARD_MONGO_DATABASE": "other"})
