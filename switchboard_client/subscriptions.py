"""The client's subscriptions: subscribing on each connection, and the pushes that concern them.

Every subscription is (re)subscribed on each new connection, `since` its position once it has
one. A refusal with `unavailable` (a backing service is down) is retried with backoff on the same
connection; any other refusal ends the subscription. A subscribe reply takes effect in the read
loop itself (see connection.py), so no publication slips between recovered and live ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard_client.backoff import Backoff
from switchboard_client.callbacks import Callbacks
from switchboard_client.connection import Connection
from switchboard_client.errors import ConnectionLost, SwitchboardError
from switchboard_client.subscription import OnJoinLeave, OnPublication, OnRecovery, Subscription
from switchboard_client.types import Position

log = logging.getLogger("switchboard_client")

#: The `unsubscribed` reason of a subscription the server could not keep gapless.
RESUBSCRIBE = "insufficient_state"


class Subscriptions:
    def __init__(
        self,
        emit: Callable[..., None],
        callbacks: Callbacks,
        min_delay: float,
        max_delay: float,
    ) -> None:
        self._emit = emit  # the client's events: ("recovery", info), ("error", error)
        self.callbacks = callbacks
        self._min_delay, self._max_delay = min_delay, max_delay
        self._subs: dict[str, Subscription] = {}
        self._tasks: dict[Subscription, asyncio.Task[None]] = {}  # subscribing now
        self._background: set[asyncio.Task[None]] = set()
        self._conn: Connection | None = None

    def get(self, channel: str) -> Subscription | None:
        return self._subs.get(channel)

    # -- the connection's lifecycle ------------------------------------------------------------

    def connected(self, conn: Connection) -> None:
        self._conn = conn
        for sub in self._subs.values():
            self._start(sub)

    def lost(self) -> None:
        """The connection is gone: nothing is active until the next one subscribes again."""
        self._conn = None
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        for sub in self._subs.values():
            sub.active = False

    def stop(self, error: SwitchboardError | None) -> None:
        """End every subscription: the client closed (None) or gave up (`error`)."""
        self.lost()
        for task in self._background:
            task.cancel()
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            sub.end(error)

    def on_push(self, msg: dict[str, Any]) -> None:
        """A `pub`, `join`, `leave` or `unsubscribed` push (others are ignored)."""
        kind = msg.get("push")
        sub = self._subs.get(msg.get("channel"))  # type: ignore[arg-type]
        if sub is None:
            return
        if kind == "pub":
            if sub.active:
                del msg["push"]
                sub.deliver(msg)  # type: ignore[arg-type]
        elif kind == "join" and sub.on_join is not None:
            self.callbacks.invoke(sub.on_join, msg)
        elif kind == "leave" and sub.on_leave is not None:
            self.callbacks.invoke(sub.on_leave, msg)
        elif kind == "unsubscribed":
            self._ended(sub, str(msg.get("reason")))

    def _ended(self, sub: Subscription, reason: str) -> None:
        """The server ended a subscription; one it could not keep gapless is taken up again."""
        sub.active = False
        if reason == RESUBSCRIBE:
            self._start(sub)
            return
        del self._subs[sub.channel]
        error = SwitchboardError(reason, f"unsubscribed from {sub.channel}", channel=sub.channel)
        sub.end(error)
        self._emit("error", error)

    # -- subscribing -----------------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        on_publication: OnPublication | None,
        since: Position | None,
        on_join: OnJoinLeave | None,
        on_leave: OnJoinLeave | None,
        on_recovery: OnRecovery | None,
        max_queue: int,
    ) -> Subscription:
        if channel in self._subs:
            raise SwitchboardError("bad_request", f"already subscribed to {channel}")
        sub = Subscription(
            self, channel, on_publication, since, on_join, on_leave, on_recovery, max_queue
        )
        self._subs[channel] = sub
        self._start(sub)
        try:
            await asyncio.shield(sub.ready)
        except asyncio.CancelledError:
            self._forget(sub)
            raise
        return sub

    def _start(self, sub: Subscription) -> None:
        conn = self._conn
        if conn is None:
            return  # the next connection subscribes
        old = self._tasks.pop(sub, None)
        if old is not None:
            old.cancel()
        self._tasks[sub] = asyncio.create_task(self._subscribe_on(conn, sub))

    async def _subscribe_on(self, conn: Connection, sub: Subscription) -> None:
        """Subscribe on `conn`, retrying an `unavailable` refusal with backoff."""
        backoff = Backoff(self._min_delay, self._max_delay)
        try:
            while True:
                since = sub.position
                error = await self._subscribe_once(conn, sub, since)
                if error is None or isinstance(error, ConnectionLost):
                    return  # done, or the next connection subscribes again
                if error.code != "unavailable":
                    self._refused(sub, error, since is not None)
                    return
                delay = backoff.next()
                log.debug("subscribe to %s: %s; retrying in %.2f s", sub.channel, error, delay)
                await asyncio.sleep(delay)
        finally:
            if self._tasks.get(sub) is asyncio.current_task():
                del self._tasks[sub]

    async def _subscribe_once(
        self, conn: Connection, sub: Subscription, since: Position | None
    ) -> SwitchboardError | None:
        outcome: asyncio.Future[SwitchboardError | None] = (
            asyncio.get_running_loop().create_future()
        )

        def on_reply(reply: dict[str, Any] | ConnectionLost) -> None:
            error = self._subscribed(conn, sub, since, reply)
            if not outcome.done():  # the task may have been cancelled meanwhile
                outcome.set_result(error)

        fields: dict[str, Any] = {"channel": sub.channel}
        if since is not None:
            fields["since"] = since
        try:
            await conn.send("subscribe", fields, on_reply)
        except ConnectionLost as lost:
            return lost
        return await outcome

    def _subscribed(
        self,
        conn: Connection,
        sub: Subscription,
        since: Position | None,
        reply: dict[str, Any] | ConnectionLost,
    ) -> SwitchboardError | None:
        """Apply a subscribe reply, in the read loop, before the next frame is read."""
        if isinstance(reply, ConnectionLost):
            return reply
        if "error" in reply:
            err = reply["error"]
            return SwitchboardError(str(err.get("code")), str(err.get("message")))
        if self._subs.get(sub.channel) is not sub or self._conn is not conn:
            if self._conn is conn and sub.channel not in self._subs:
                self._spawn(self._quiet_unsubscribe(conn, sub.channel))  # gone meanwhile
            return None
        result = reply["result"]
        if result["epoch"] != sub.epoch:
            sub.offset = 0 if since is not None else result["offset"]
        sub.epoch = result["epoch"]
        sub.active = True
        for pub in result.get("missed") or ():
            pub["channel"] = sub.channel
            sub.deliver(pub)
        if since is not None:
            self._emit("recovery", sub.recovery(bool(result.get("recovered"))))
        sub.confirmed()
        return None

    def _refused(self, sub: Subscription, error: SwitchboardError, resuming: bool) -> None:
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]
        error.channel = sub.channel
        sub.end(error)
        if resuming:
            self._emit("error", error)

    def restart(self, sub: Subscription) -> None:
        """Start a subscription again `since` its position (its reader fell behind)."""
        if self._subs.get(sub.channel) is not sub:
            return
        sub.active = False
        conn = self._conn
        if conn is not None:  # else the next connection resubscribes `since` anyway
            self._spawn(self._resubscribe(conn, sub))

    async def _resubscribe(self, conn: Connection, sub: Subscription) -> None:
        try:
            await conn.call("unsubscribe", {"channel": sub.channel})
        except SwitchboardError:
            return  # the connection went: the next one resubscribes `since`
        if self._conn is conn and self._subs.get(sub.channel) is sub:
            self._start(sub)

    # -- unsubscribing -----------------------------------------------------------------------------

    def _forget(self, sub: Subscription) -> None:
        """Drop a subscription locally; the server side, if any, goes with `unsubscribe`."""
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]
        task = self._tasks.pop(sub, None)
        if task is not None:
            task.cancel()
        sub.end(None)

    async def unsubscribe(self, channel: str | Subscription) -> None:
        name = channel if isinstance(channel, str) else channel.channel
        sub = self._subs.get(name)
        if sub is None or (isinstance(channel, Subscription) and sub is not channel):
            return
        was_active = sub.active
        self._forget(sub)
        conn = self._conn
        if was_active and conn is not None:
            try:
                await conn.call("unsubscribe", {"channel": name})
            except ConnectionLost:
                pass  # the server forgot it with the connection

    async def _quiet_unsubscribe(self, conn: Connection, channel: str) -> None:
        try:
            await conn.call("unsubscribe", {"channel": channel})
        except SwitchboardError:
            pass

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
