"""Logging: one JSON object per line for machines, readable coloured lines for people.

`--log-format auto` (the default) writes text on a terminal and JSON otherwise (a file, a pipe,
journald, a container's log driver). Records carry ids (client, node) passed through `extra`;
both formats show them. No caller ever logs a secret or token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
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
        if record.exc_text:
            doc["exc"] = record.exc_text
        elif record.exc_info:
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
        if record.exc_text:
            line += "\n" + record.exc_text
        elif record.exc_info:
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
    handler.addFilter(SafeLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs of every WebSocket upgrade and API call would drown the rest at load.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def access_log(handler: RequestHandler) -> None:
    """Tornado's access log line, without the query string.

    Queries carry connection tokens (`/ws?token=...`) and OAuth codes and states
    (`/login/github/callback?code=...`); Tornado's own line logs the whole URI. Refusals
    (status 400 and up) go through the application's `log_throttle`, when it has one: at
    most a line a second per status, with a count.
    """
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    req = handler.request
    args = (status, req.method, req.path, 1000.0 * req.request_time())
    extra = {"status": status, "remote_ip": req.remote_ip}
    throttle = handler.settings.get("log_throttle")
    if status >= 400 and isinstance(throttle, Throttle):
        throttle.note(f"http_{status}", "%d %s %s %.2fms", *args, level=level, extra=extra)
        return
    logging.getLogger("tornado.access").log(level, "%d %s %s %.2fms", *args, extra=extra)


# -- no secrets from requests, no floods (docs/security.md) ----------------------------------

#: A query string after a path or URL: `/ws?token=...`, `uri='/cb?code=...'`.
_QUERY = re.compile(r"(?<=\S)\?[^\s'\"<>]+")
#: Tornado's 400 for a query argument that is not UTF-8 quotes the argument's first bytes.
_BAD_UNICODE = re.compile(r"(Invalid unicode in [^:\n]*):[^\n]*")
#: Tornado's own lines that one hostile client can make once per connection.
NOISY = frozenset({"Timeout reading body from %s", "Malformed HTTP message from %s: %s"})


def scrub(text: str) -> str:
    """Drop query strings (tokens, OAuth codes and states) and quoted argument bytes."""
    if "?" not in text and "Invalid unicode" not in text:
        return text
    return _BAD_UNICODE.sub(r"\1", _QUERY.sub("", text))


class SafeLines(logging.Filter):
    """On the log handler, so every record passes it, Tornado's own included.

    Rewrites each record without query strings (Tornado's warnings quote the whole URI,
    `?token=` and all), and lets Tornado's per-connection complaints through at most once a
    second each, carrying the count of those held back.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg in NOISY:
            now = time.monotonic()
            if now - self._last.get(record.msg, -1e9) < self.interval_s:
                self._held[record.msg] = self._held.get(record.msg, 0) + 1
                return False
            self._last[record.msg] = now
            held = self._held.pop(record.msg, 0)
            if held:
                record.msg, record.args = f"{record.getMessage()} ({held} more held back)", None
        try:
            message = record.getMessage()
        except Exception:  # a broken format: let the handler report it as it would
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, scrub(value))
        return True


class Throttle:
    """Log a kind of event at most once a second: the first at once, the rest as one count.

    For refusals and limits, which a hostile client can trigger thousands of times a second:
    `note("sockets_per_ip", "refused a connection from %s", ip)` logs that line, then holds
    further notes of the kind until a second has passed and logs how many there were.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._held: dict[str, list[Any]] = {}  # kind -> [count, msg, args, level, extra]
        self.counts: dict[str, int] = {}  # every note ever, by kind (for tests and stats)

    def note(
        self,
        kind: str,
        msg: str,
        *args: Any,
        level: int = logging.WARNING,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        held = self._held.get(kind)
        if held is not None:
            held[0] += 1
            held[1:] = [msg, args, level, extra]
            return
        self.logger.log(level, msg, *args, extra={**(extra or {}), "limit": kind, "count": 1})
        self._held[kind] = [0, msg, args, level, extra]
        asyncio.get_running_loop().call_later(self.interval_s, self._flush, kind)

    def _flush(self, kind: str) -> None:
        count, msg, args, level, extra = self._held.pop(kind)
        if not count:
            return
        self.logger.log(
            level,
            msg + " (%d times in the last %.0f s)",
            *args,
            count,
            self.interval_s,
            extra={**(extra or {}), "limit": kind, "count": count},
        )
        self._held[kind] = [0, msg, args, level, extra]
        asyncio.get_running_loop().call_later(self.interval_s, self._flush, kind)
