"""Logs: JSON lines with ids, and never a token or an OAuth code from a query string."""

from __future__ import annotations

import logging

import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from server.logs import JsonFormatter
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
