"""Logging: one JSON object per line for machines, readable coloured lines for people.

`--log-format auto` (the default) writes text on a terminal and JSON otherwise (a file, a pipe,
journald, a container's log driver). Records carry ids (client, node) passed through `extra`;
both formats show them. No caller ever logs a secret or token.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from tornado.web import RequestHandler

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
FORMATS = ("auto", "text", "json")

#: ANSI colours of the level names; the extras are dimmed so the message stands out.
_COLOURS = {
    logging.DEBUG: "\x1b[2m",
    logging.INFO: "\x1b[32m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}
_DIM, _RESET = "\x1b[2m", "\x1b[0m"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """`12:00:01.234 INFO  switchboard: listening on ... node=h-1-ab port=8000`, coloured on
    request: the level by severity, the ids dimmed."""

    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = f"{record.levelname:<7}"
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        if self.colour:
            level = _COLOURS.get(record.levelno, "") + level + _RESET
            extras = extras and _DIM + extras + _RESET
        line = f"{ts}.{int(record.msecs):03d} {level} {record.name}: {record.getMessage()}"
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def formatter(fmt: str = "auto", stream: Any = None) -> logging.Formatter:
    """The formatter `--log-format` names; `auto` is text on a terminal and JSON otherwise.

    Text is coloured only on a terminal and never when NO_COLOR is set (no-color.org).
    """
    stream = sys.stderr if stream is None else stream
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if fmt == "json" or (fmt == "auto" and not tty):
        return JsonFormatter()
    return TextFormatter(colour=tty and not os.environ.get("NO_COLOR"))


def setup(level: str = "INFO", fmt: str = "auto") -> None:
    """Log to stderr in the format `--log-format` names."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, sys.stderr))
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
