"""Structured logging: one JSON object per line when stderr is not a terminal.

Records carry ids (client, node) passed through `extra`; no caller ever logs a secret or token.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from tornado.web import RequestHandler

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup(level: str = "INFO", json: bool | None = None) -> None:
    """Log to stderr: JSON lines for machines, readable lines on a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    if json is None:
        json = not sys.stderr.isatty()
    handler.setFormatter(
        JsonFormatter()
        if json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs of every WebSocket upgrade and API call would drown the rest at load.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def access_log(handler: RequestHandler) -> None:
    """Tornado's access log line, without the query string.

    Queries carry connection tokens (`/ws?token=...`) and OAuth codes and states
    (`/login/github/callback?code=...`); Tornado's own line logs the whole URI.
    """
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    req = handler.request
    logging.getLogger("tornado.access").log(
        level,
        "%d %s %s %.2fms",
        status,
        req.method,
        req.path,
        1000.0 * req.request_time(),
        extra={"status": status, "remote_ip": req.remote_ip},
    )
