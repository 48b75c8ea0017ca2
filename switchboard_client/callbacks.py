"""Calling the application's callbacks without letting them break the client.

A callback that raises is logged and the client carries on, as a browser reports an error in
an event listener and keeps dispatching. A callback may be a coroutine function: its coroutine
is started as a task, in the order of events, and held until it ends (the event loop itself
keeps only weak references to tasks).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("switchboard_client")


class Callbacks:
    def __init__(self) -> None:
        self._running: set[asyncio.Future[Any]] = set()

    def invoke(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            result = fn(*args)
        except Exception:
            log.exception("a Switchboard callback raised")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a Switchboard callback raised", exc_info=task.exception())
