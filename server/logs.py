"""Structured logging: one JSON object per line when stderr is not a terminal.

Records carry ids (client, node) passed through `extra`; no caller ever logs a secret or token.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

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
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs of every WebSocket upgrade and API call would drown the rest at load.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
