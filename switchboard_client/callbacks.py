"""Calling the application's callbacks without letting them break the client.

A callback that raises is logged and the client carries on, as a browser reports an error in
an event listener and keeps dispatching. A callback may be a coroutine function: its coroutine
is started as a task (the client keeps a reference until it ends) in the order of events.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("switchboard_client")

_running: set[asyncio.Task[Any]] = set()


def invoke(fn: Callable[..., object], *args: Any) -> None:
    try:
        result = fn(*args)
    except Exception:
        log.exception("a Switchboard callback raised")
        return
    if inspect.isawaitable(result):
        task = asyncio.ensure_future(result)
        _running.add(task)
        task.add_done_callback(_finished)


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("a Switchboard callback raised", exc_info=task.exception())
