"""The tracker: watches the hub for users and channels coming and going on this process.

The hub calls it synchronously (no I/O there); it only marks keys as changed and wakes its
worker, which tells the claims what is present here now, in one pass per wake-up. Marking
the key rather than queueing each change keeps the work bounded whatever the churn: a tab
reloaded ten times before the worker runs is one key looked at once. The worker also sweeps
for keys gone everywhere and renews this process's keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from server.broker.base import BrokerUnavailable
from server.broker.redis_conn import backoff
from server.hub import Addressable
from server.waits import woken
from server.webhooks.claims import CHANNEL, KINDS, USER, Claims

log = logging.getLogger("switchboard.webhooks")

#: Called with (kind, key, present, seq) for each change the claims gave this process.
OnChange = Callable[[str, str, bool, int], None]


class Tracker:
    def __init__(
        self,
        claims: Claims,
        on_change: OnChange,
        sweep_s: float,
        renew_s: float,
        tracked: Callable[[str], bool] = lambda channel: True,
    ) -> None:
        self._claims = claims
        self._on_change = on_change
        self._sweep_s = sweep_s
        self._renew_s = renew_s
        self._tracked = tracked
        self._users: dict[str, set[str]] = {}  # user -> ids of its clients here
        self._channels: set[str] = set()
        self._dirty: dict[str, dict[str, None]] = {kind: {} for kind in KINDS}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- the hub's observer -------------------------------------------------------------------

    def client_added(self, client: Addressable) -> None:
        if client.user is None:
            return
        clients = self._users.setdefault(client.user, set())
        if not clients:
            self._mark(USER, client.user)
        clients.add(client.id)

    def client_removed(self, client: Addressable) -> None:
        clients = self._users.get(client.user) if client.user is not None else None
        if clients is None or client.id not in clients:
            return
        clients.discard(client.id)
        if not clients:
            del self._users[client.user]  # type: ignore[arg-type]
            self._mark(USER, client.user)  # type: ignore[arg-type]

    def channel_occupied(self, channel: str) -> None:
        if self._tracked(channel):
            self._channels.add(channel)
            self._mark(CHANNEL, channel)

    def channel_vacated(self, channel: str) -> None:
        if channel in self._channels:
            self._channels.discard(channel)
            self._mark(CHANNEL, channel)

    def _mark(self, kind: str, key: str) -> None:
        self._dirty[kind][key] = None
        self._wake.set()

    def _here(self, kind: str) -> set[str] | dict[str, set[str]]:
        return self._users if kind == USER else self._channels

    # -- the worker ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Tell the claims what changed last (clients leave on shutdown), then stop."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except (TimeoutError, BrokerUnavailable) as exc:
            log.warning("webhooks: last changes not recorded: %s", exc or "timeout")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self._sweep_s
        next_renew = loop.time() + self._renew_s
        failures = 0
        while True:
            wait = min(next_sweep, next_renew if self._claims.renews else next_sweep) - loop.time()
            await woken(self._wake, max(0.0, wait))
            self._wake.clear()
            try:
                await self.flush()
                if loop.time() >= next_sweep:
                    await self.sweep()
                    next_sweep = loop.time() + self._sweep_s
                if self._claims.renews and loop.time() >= next_renew:
                    await self.renew()
                    next_renew = loop.time() + self._renew_s
                failures = 0
            except BrokerUnavailable as exc:
                log.warning("webhooks: claims unavailable: %s", exc)
                await asyncio.sleep(backoff(failures, 0.1, 5.0))
                failures += 1

    async def flush(self) -> None:
        """Tell the claims about every key marked since the last flush."""
        for kind in KINDS:
            dirty = self._dirty[kind]
            if not dirty:
                continue
            keys = list(dirty)
            dirty.clear()
            here = self._here(kind)
            present = [k for k in keys if k in here]
            gone = [k for k in keys if k not in here]
            try:
                if present:
                    for key, seq in await self._claims.appear(kind, present):
                        self._on_change(kind, key, True, seq)
                if gone:
                    await self._claims.vanish(kind, gone)
            except BrokerUnavailable:
                for key in keys:
                    dirty[key] = None  # again next time: appear and vanish are idempotent
                raise

    async def sweep(self) -> None:
        for kind in KINDS:
            for key, seq in await self._claims.sweep(kind):
                self._on_change(kind, key, False, seq)

    async def renew(self) -> None:
        """Keep this process's keys claimed; a key the claims lost is announced again."""
        for kind in KINDS:
            for key, seq in await self._claims.appear(kind, list(self._here(kind))):
                self._on_change(kind, key, True, seq)
