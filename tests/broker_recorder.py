"""A broker handler for tests: records every callback in order, for awaiting one by one."""

from __future__ import annotations

import asyncio
from typing import Any


class Recorder:
    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def on_publication(self, channel: str, offset: int, epoch: str, body: bytes) -> None:
        self.events.put_nowait(("pub", channel, offset, epoch, body))

    def on_join_leave(self, channel: str, client_id: str, frame: bytes) -> None:
        self.events.put_nowait(("join_leave", channel, client_id, frame))

    def on_control(self, message: bytes) -> None:
        self.events.put_nowait(("control", message))

    def on_reconnected(self) -> None:
        self.events.put_nowait(("reconnected",))

    async def next(self, timeout: float = 5.0) -> tuple[Any, ...]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def next_of(self, kind: str, timeout: float = 5.0) -> tuple[Any, ...]:
        """The next event of `kind`, skipping others."""
        while True:
            event = await self.next(timeout)
            if event[0] == kind:
                return event
