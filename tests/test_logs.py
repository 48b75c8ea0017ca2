"""Logs: JSON lines with ids, and never a token or an OAuth code from a query string."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from server.process.logs import JsonFormatter, TextFormatter, formatter
from tests.support import http


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(JsonFormatter().format(record))


@pytest.fixture
def access_lines():
    logger = logging.getLogger("tornado.access")
    collect, level = Collect(), logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    yield collect.lines
    logger.removeHandler(collect)
    logger.setLevel(level)


def test_json_lines_carry_extra_ids():
    record = logging.makeLogRecord(
        {
            "name": "switchboard.client",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "command %s failed",
            "args": ("publish",),
            "client": "abc123",
        }
    )
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["msg"] == "command publish failed" and doc["client"] == "abc123"
    assert doc["level"] == "error" and doc["ts"].endswith("Z")


@pytest.mark.asyncio
async def test_access_log_leaves_out_queries(app, access_lines):
    secret = "eyJhbGciOiJIUzI1NiJ9.not-a-real-token.SECRETSIGNATURE"
    with pytest.raises(tornado.httpclient.HTTPClientError):
        await tornado.websocket.websocket_connect(f"{app.ws_url}?token={secret}")
    await http(app, "GET", "/login/github/callback?code=SECRETCODE&state=SECRETSTATE", key=None)
    text = "\n".join(access_lines)
    assert "401 GET /ws " in text and "/login/github/callback" in text
    assert "SECRET" not in text


def _record(level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": "switchboard",
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": "listening on %s",
            "args": ("http://127.0.0.1:8000/",),
            **extra,
        }
    )


def test_text_lines_are_readable_and_coloured_by_level():
    line = TextFormatter(colour=True).format(_record(logging.WARNING, node="h-1-ab"))
    assert "\x1b[33mWARNING\x1b[0m switchboard: listening on http://127.0.0.1:8000/" in line
    assert line.endswith("\x1b[2mnode=h-1-ab\x1b[0m")
    plain = TextFormatter(colour=False).format(_record(node="h-1-ab"))
    assert "\x1b" not in plain and plain.endswith(
        "INFO    switchboard: listening on http://127.0.0.1:8000/ node=h-1-ab"
    )


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    "fmt,tty,no_color,expected",
    [
        ("auto", True, "", "colour"),
        ("auto", True, "1", "plain"),
        ("auto", False, "", "json"),
        ("text", False, "", "plain"),
        ("json", True, "", "json"),
    ],
)
def test_log_format_choice(monkeypatch, fmt, tty, no_color, expected):
    monkeypatch.setenv("NO_COLOR", no_color)
    chosen = formatter(fmt, _Stream(tty))
    kind = (
        "json"
        if isinstance(chosen, JsonFormatter)
        else "colour"
        if isinstance(chosen, TextFormatter) and chosen.colour
        else "plain"
    )
    assert kind == expected


def _first_log_line(stderr_fd: int, read_fd: int, *args: str) -> str:
    """Start the server with stderr on `stderr_fd`; return its output up to 'listening on'."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--dev", "--port", "0", *args],
        cwd=Path(__file__).resolve().parent.parent,
        env={**env, "SWITCHBOARD_MONGO_URL": "memory:"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr_fd,
    )
    os.close(stderr_fd)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while b"listening on" not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], 1)
            if ready:
                out += os.read(read_fd, 4096)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        os.close(read_fd)
    return next(line for line in out.decode().splitlines() if "listening on" in line)


def test_server_logs_in_colour_on_a_terminal_and_json_into_a_pipe():
    master, slave = pty.openpty()
    line = _first_log_line(slave, master)
    assert "\x1b[32mINFO" in line and "\x1b[2mnode=" in line
    r, w = os.pipe()
    doc = orjson.loads(_first_log_line(w, r))
    assert doc["level"] == "info" and doc["msg"].startswith("listening on") and "node" in doc
    master, slave = pty.openpty()
    line = _first_log_line(slave, master, "--log-format", "json")
    assert orjson.loads(line)["msg"].startswith("listening on")
