"""The asyncio client for protocol v1, with the guarantees of static/switchboard.js.

    async with Client("ws://127.0.0.1:8000/ws", get_token=fetch_token) as sb:
        sub = await sb.subscribe("chat:lobby", on_publication=print)
        ack = await sb.publish("chat:lobby", {"text": "hi"})

It reconnects by itself with exponential backoff and full jitter (0.5 s doubling to 20 s),
except after a `disconnect` push with `reconnect: false` or a close with 4001, 4003 or 4008; a
draining server's `reconnect_delay_ms` replaces the backoff once. It pings every `ping_interval`
of the hello and drops a connection whose ping goes unanswered. On reconnect it resubscribes each
channel `since` the last publication it delivered, so each arrives once and in order; when the
server cannot recover the gap, the `recovery` event says `recovered: False`. A subscribe refused
with `unavailable` (a backing service is down) is retried with backoff, not given up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal, overload
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from switchboard_client.backoff import Backoff, drain_delay
from switchboard_client.callbacks import Callbacks
from switchboard_client.connection import Connection
from switchboard_client.errors import (
    FINAL_CLOSES,
    SwitchboardError,
    close_error_code,
)
from switchboard_client.subscription import OnJoinLeave, OnPublication, OnRecovery, Subscription
from switchboard_client.subscriptions import Subscriptions
from switchboard_client.types import (
    Hello,
    HistoryResult,
    Position,
    PresenceResult,
    PublishResult,
    State,
)

log = logging.getLogger("switchboard_client")

GetToken = Callable[[], Awaitable[str | None]]
OnState = Callable[[State, float | None], object]
OnError = Callable[[SwitchboardError], object]
Event = Literal["state", "error", "recovery"]

#: HTTP statuses refusing the upgrade that retrying with the same credentials cannot fix
FINAL_STATUSES = {401: "unauthorized", 403: "forbidden"}


class Client:
    """A connection to a Switchboard server that stays up until `close()`.

    `token` is a connection token (JWT) for the first connect; `get_token`, an async callable,
    is asked for a fresh one on every connect after it (on every connect when `token` is None),
    so an expired token is replaced by reconnecting. Delays are in seconds. `encoding="msgpack"`
    speaks MessagePack (binary frames) instead of JSON; the values are the same.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        get_token: GetToken | None = None,
        *,
        min_delay: float = 0.5,
        max_delay: float = 20.0,
        connect_timeout: float = 10.0,
        ping_timeout: float = 5.0,
        stable_after: float = 5.0,
        encoding: Literal["json", "msgpack"] = "json",
    ) -> None:
        self.url = url
        #: "msgpack": ask for MessagePack frames (the server's `switchboard.msgpack`)
        self.encoding = encoding
        self.state: State = "disconnected"
        #: the server's hello on the current (or last) connection
        self.hello: Hello | None = None
        self._token = token
        self._get_token = get_token
        self._connect_timeout = connect_timeout
        self._ping_timeout = ping_timeout
        self._stable_after = stable_after
        self._backoff = Backoff(min_delay, max_delay)
        self._listeners: dict[str, list[Callable[..., object]]] = {}
        #: runs the application's callbacks (subscriptions' too)
        self.callbacks = Callbacks()
        self._subs = Subscriptions(self._emit, self.callbacks, min_delay, max_delay)
        self._conn: Connection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[Hello] | None = None
        self._closed: SwitchboardError | None = None  # why the client stopped for good
        self._connects = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> Hello:
        """Connect (once) and return the server's hello; raises only if the client gives up."""
        if self._closed is not None:
            raise self._closed
        if self._runner is None:
            self._connected = asyncio.get_running_loop().create_future()
            self._connected.add_done_callback(_observe)
            self._runner = asyncio.create_task(self._run())
        assert self._connected is not None
        return await asyncio.shield(self._connected)

    async def close(self) -> None:
        """Close for good: no reconnect; subscriptions end and waiting calls fail."""
        if self._closed is None:
            self._closed = SwitchboardError("unavailable", "client closed")
        runner, self._runner = self._runner, None
        conn, self._conn = self._conn, None
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        self._subs.stop(None)
        if conn is not None:
            await conn.close(1000, "client closed")
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(self._closed)
        self._set_state("disconnected")

    # -- events ----------------------------------------------------------------------------------

    @overload
    def on(self, event: Literal["state"], fn: OnState) -> Callable[[], None]: ...
    @overload
    def on(self, event: Literal["error"], fn: OnError) -> Callable[[], None]: ...
    @overload
    def on(self, event: Literal["recovery"], fn: OnRecovery) -> Callable[[], None]: ...

    def on(self, event: Event, fn: Callable[..., object]) -> Callable[[], None]:
        """Listen to "state" (state, seconds until the next attempt or None), "error"
        (SwitchboardError) or "recovery" ({channel, recovered}); returns a function that stops
        listening. A callback may be a coroutine function."""
        listeners = self._listeners.setdefault(event, [])
        listeners.append(fn)
        return lambda: listeners.remove(fn) if fn in listeners else None

    def _emit(self, event: Event, *args: Any) -> None:
        for fn in list(self._listeners.get(event, ())):
            self.callbacks.invoke(fn, *args)

    def _set_state(self, state: State, retry_in: float | None = None) -> None:
        changed = state != self.state
        self.state = state
        if changed or retry_in is not None:
            self._emit("state", state, retry_in)

    # -- the connection loop -------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                delay = await self._connect_once()
                if delay is None:
                    return
                self._set_state(self._waiting_state(), delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave callers waiting for ever
            log.exception("Switchboard client loop failed")
            self._give_up(SwitchboardError("internal", f"client failed: {exc!r}"))

    def _waiting_state(self) -> State:
        return "reconnecting" if self.hello is not None else "connecting"

    async def _connect_once(self) -> float | None:
        """One connection, from token to close; returns the delay before the next, or None."""
        self._set_state(self._waiting_state(), 0.0)
        try:
            token = await self._next_token()
        except Exception as exc:
            self._emit("error", SwitchboardError("unauthorized", f"no token: {exc}"))
            return self._backoff.next()
        try:
            conn = await Connection.open(
                with_token(self.url, token), self._connect_timeout, self._on_push, self.encoding
            )
        except InvalidURI as exc:
            self._give_up(SwitchboardError("bad_request", str(exc)))
            return None
        except InvalidStatus as exc:
            status = exc.response.status_code
            refusal = SwitchboardError(
                FINAL_STATUSES.get(status, "unavailable"),
                f"refused with HTTP {status}",
                status=status,
            )
            if status in FINAL_STATUSES and not (status == 401 and self._get_token):
                self._give_up(refusal)
                return None
            if status == 401:
                self._emit("error", refusal)  # the token was refused: the next one may do
            return self._backoff.next()
        except (OSError, TimeoutError, InvalidHandshake, SwitchboardError) as exc:
            log.debug("connect to %s failed: %r", self.url, exc)
            return self._backoff.next()
        return await self._serve(conn)

    async def _next_token(self) -> str | None:
        self._connects += 1
        if self._get_token is None or (self._connects == 1 and self._token is not None):
            return self._token
        return await self._get_token()

    async def _serve(self, conn: Connection) -> float | None:
        """Use a connection until it ends; then decide whether and when to reconnect."""
        self._conn = conn
        self.hello = conn.hello
        started = time.monotonic()
        self._set_state("connected")
        self._subs.connected(conn)
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(conn.hello)
        interval = max(1.0, float(conn.hello.get("ping_interval") or 25))
        try:
            code, reason = await conn.run(interval, self._ping_timeout)
        finally:
            self._conn = None
            self._subs.lost()
        push = conn.disconnect_push
        renewable = code == 4001 and self._get_token is not None
        if push is not None:
            retry = bool(push.get("reconnect")) or renewable
        else:
            retry = code not in FINAL_CLOSES or renewable
        if not retry:
            final = int(push.get("code", code)) if push is not None else code
            text = (push or {}).get("reason") or reason or f"closed with {code}"
            self._give_up(SwitchboardError(close_error_code(final), str(text), close_code=final))
            return None
        if time.monotonic() - started > self._stable_after:
            self._backoff.reset()
        delay_ms = _drain_ms(push)
        return self._backoff.next() if delay_ms is None else drain_delay(delay_ms)

    def _give_up(self, error: SwitchboardError) -> None:
        """Stop for good because the server said so (or cannot be reached at all)."""
        self._closed = error
        self._runner = None
        self._subs.stop(error)
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(error)
        self._emit("error", error)
        self._set_state("disconnected")

    # -- pushes --------------------------------------------------------------------------------

    def _on_push(self, msg: dict[str, Any]) -> None:
        if "push" in msg:
            self._subs.on_push(msg)
        elif isinstance(msg.get("error"), dict):  # an error reply without an id
            err = msg["error"]
            self._emit("error", SwitchboardError(str(err.get("code")), str(err.get("message"))))

    # -- subscribing -------------------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        on_publication: OnPublication | None = None,
        *,
        since: Position | None = None,
        on_join: OnJoinLeave | None = None,
        on_leave: OnJoinLeave | None = None,
        on_recovery: OnRecovery | None = None,
        max_queue: int = 10_000,
    ) -> Subscription:
        """Subscribe now or, while reconnecting, as soon as connected; returns once confirmed.

        Without `on_publication`, read the publications with `async for pub in sub`. `since`
        ({offset, epoch}, e.g. from a `history` call) first delivers what came after it.
        """
        if self._closed is not None:
            raise self._closed
        return await self._subs.subscribe(
            channel, on_publication, since, on_join, on_leave, on_recovery, max_queue
        )

    async def unsubscribe(self, channel: str | Subscription) -> None:
        """End a subscription (by channel or Subscription); its iteration stops."""
        await self._subs.unsubscribe(channel)

    def subscription(self, channel: str) -> Subscription | None:
        """The subscription to `channel`, if any."""
        return self._subs.get(channel)

    # -- commands --------------------------------------------------------------------------------

    async def _call(self, op: str, fields: dict[str, Any]) -> Any:
        conn = self._conn
        if conn is None:
            raise SwitchboardError("unavailable", "not connected")
        return await conn.call(op, fields)

    async def publish(self, channel: str, data: Any) -> PublishResult:
        """Publish; returns {offset, epoch} once the server stored and handed it on."""
        result: PublishResult = await self._call("publish", {"channel": channel, "data": data})
        return result

    async def history(
        self,
        channel: str,
        *,
        since: int | None = None,
        limit: int | None = None,
        reverse: bool | None = None,
    ) -> HistoryResult:
        """A page of the channel's history: after offset `since`, at most `limit` (max 1000)."""
        fields: dict[str, Any] = {"channel": channel}
        for name, value in (("since", since), ("limit", limit), ("reverse", reverse)):
            if value is not None:
                fields[name] = value
        result: HistoryResult = await self._call("history", fields)
        return result

    async def presence(self, channel: str) -> PresenceResult:
        """Who is subscribed to the channel now: {clients: {client id: {user, name}}}."""
        result: PresenceResult = await self._call("presence", {"channel": channel})
        return result


def with_token(url: str, token: str | None) -> str:
    """The WebSocket URL with `token` in its query (http(s) URLs become ws(s))."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    if token:
        query.append(("token", token))
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _drain_ms(push: dict[str, Any] | None) -> float | None:
    """A draining server's `reconnect_delay_ms`, when its `disconnect` push carries one."""
    if push is None or not push.get("reconnect"):
        return None
    value = push.get("reconnect_delay_ms")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _observe(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
