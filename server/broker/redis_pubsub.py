"""The one pub/sub connection of a process: subscriptions, reading, reconnecting.

Written on a bare redis-py connection rather than its PubSub class because the broker must know
two things PubSub hides: when a subscription is confirmed (only then may the node read the
channel's position without missing a publication) and when the link was lost and rebuilt (then
the node must make its subscribers recover through history).

Under Redis Cluster a link serves one shard's primary (server/broker/redis_shards.py keeps one
per primary): there the server may also drop a subscription itself when its slot moves away, or
refuse one with MOVED; the link reports such channels through `on_dropped` instead of treating
them as a lost connection.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis.asyncio
import redis.exceptions
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.crc import key_slot

from server.broker.base import BrokerUnavailable
from server.broker.redis_conn import CONNECT_TIMEOUT_S, ERRORS, backoff, unavailable

log = logging.getLogger("switchboard.redis")

#: Without traffic for this long the link sends a PING; without an answer for as long again
#: it counts as lost (a half-open TCP connection is otherwise never noticed).
PING_S = 5.0


@dataclass(frozen=True, slots=True)
class Dialect:
    """Command and message names: sharded pub/sub (Redis 7) or classic pub/sub."""

    publish: str
    subscribe: str
    unsubscribe: str
    message: bytes
    confirmed: bytes
    dropped: bytes


SHARDED = Dialect(
    "SPUBLISH", "SSUBSCRIBE", "SUNSUBSCRIBE", b"smessage", b"ssubscribe", b"sunsubscribe"
)
CLASSIC = Dialect("PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE", b"message", b"subscribe", b"unsubscribe")


class Redirected(BrokerUnavailable):
    """The server does not serve this channel's slot (MOVED): subscribe on its owner."""


class PubSubLink:
    """Keeps a set of Redis channels subscribed on one connection, across reconnects."""

    def __init__(
        self,
        pool: redis.asyncio.ConnectionPool,
        dialect: Dialect,
        on_message: Callable[[bytes, bytes], None],
        on_reconnected: Callable[[], None],
        on_dropped: Callable[[bytes], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._dialect = dialect
        self._on_message = on_message
        self._on_reconnected = on_reconnected
        self._on_dropped = on_dropped
        self._on_lost = on_lost
        self._wanted: set[bytes] = set()
        self._leaving: dict[bytes, int] = {}  # unsubscribes sent, not yet confirmed
        self._waiters: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._conn: redis.asyncio.Connection | None = None
        self._resubscribing: set[bytes] = set()
        self._received = 0
        self._links = 0  # how often the link came up
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Why the link is down, or None while it is up.
        self.down: str | None = "redis: not connected yet"

    async def start(self, channels: set[bytes]) -> None:
        """Connect in the background; wait a little for the first link, never fail."""
        self._wanted |= channels
        self._task = asyncio.ensure_future(self._run())
        try:
            await asyncio.wait_for(self._up.wait(), CONNECT_TIMEOUT_S * 2)
        except TimeoutError:
            log.warning("redis pub/sub not connected yet: %s", self.down)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe and wait for Redis to confirm it."""
        self._wanted.add(channel)
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(channel, deque())
        waiters.append(waiter)  # before sending: the confirmation may come during the send
        try:
            await self._send(self._dialect.subscribe, channel)
        except BrokerUnavailable:
            if waiter in waiters:
                waiters.remove(waiter)  # no confirmation will come for it
            self._wanted.discard(channel)
            raise
        try:
            await asyncio.wait_for(asyncio.shield(waiter), CONNECT_TIMEOUT_S * 5)
        except (TimeoutError, BrokerUnavailable) as exc:
            waiter.cancel()  # stays queued: its confirmation, if any, still pops it
            self._wanted.discard(channel)
            raise exc if isinstance(exc, BrokerUnavailable) else unavailable(exc) from None

    async def unsubscribe(self, channel: bytes) -> None:
        self._wanted.discard(channel)
        self._leaving[channel] = self._leaving.get(channel, 0) + 1
        try:
            await self._send(self._dialect.unsubscribe, channel)
        except BrokerUnavailable:
            self._left(channel)  # the lost link took the subscription with it

    @property
    def channels(self) -> set[bytes]:
        """The channels this link keeps subscribed."""
        return set(self._wanted)

    def down_for(self, channel: bytes) -> str | None:
        """Why `channel` cannot be received now, or None: on one link, the link's state."""
        return self.down

    async def _send(self, *args: str | bytes) -> None:
        conn = self._conn
        if conn is None or not conn.is_connected:
            raise BrokerUnavailable(self.down or "redis: pub/sub link lost")
        try:
            await conn.send_command(*args, check_health=False)
        except ERRORS as exc:
            raise unavailable(exc) from None

    # -- the link's task ----------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            conn: redis.asyncio.Connection = self._pool.make_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            links = self._links
            try:
                await conn.connect()  # type: ignore[no-untyped-call]  # unannotated in redis-py
                self._conn = conn
                await self._resubscribe(conn)
                await self._serve(conn)
            except (redis.exceptions.RedisError, OSError) as exc:
                self._lost(str(unavailable(exc)))
            finally:
                self._conn = None
                await conn.disconnect()
            attempt = 1 if self._links != links else attempt + 1  # count failures in a row
            await asyncio.sleep(backoff(attempt))

    async def _resubscribe(self, conn: redis.asyncio.Connection) -> None:
        self._resubscribing = set(self._wanted)
        for channel in self._resubscribing:
            await conn.send_command(self._dialect.subscribe, channel, check_health=False)

    def _lost(self, reason: str) -> None:
        if self.down is None:
            log.warning("redis pub/sub link lost: %s", reason)
            if self._on_lost is not None:
                self._on_lost()
        self.down = reason
        self._up.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(BrokerUnavailable(reason))
        self._waiters.clear()

    def _linked(self) -> None:
        """Every wanted channel is subscribed again."""
        self.down = None
        self._links += 1
        self._up.set()
        if self._links > 1:
            log.info("redis pub/sub link restored")
            self._on_reconnected()

    async def _serve(self, conn: redis.asyncio.Connection) -> None:
        """Read until the link fails; a watchdog fails it when Redis stops answering."""
        reader = asyncio.ensure_future(self._read(conn))
        watchdog = asyncio.ensure_future(self._watch(conn))
        try:
            done, _ = await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            watchdog.cancel()
            await asyncio.gather(reader, watchdog, return_exceptions=True)
        for task in done:
            task.result()

    async def _read(self, conn: redis.asyncio.Connection) -> None:
        # No read timeout: wrapping every read in one costs a third of the throughput here.
        if not self._resubscribing:
            self._linked()
        buffered = _buffered(conn)
        while True:
            try:
                self._take(await conn.read_response(timeout=math.inf))
                if buffered is not None:  # the rest of what that read brought, as parsed
                    while (msg := buffered()) is not None:
                        self._take(msg)
            except redis.exceptions.ResponseError as exc:
                if self._on_dropped is None:
                    raise
                self._refused(exc)

    def _take(self, msg: list[bytes]) -> None:
        self._received += 1
        d = self._dialect
        kind = msg[0]
        if kind == d.message:
            if msg[1] in self._wanted:
                self._dispatch(msg[1], msg[2])
        elif kind == d.confirmed:
            self._confirmed(msg[1])
        elif kind == d.dropped:
            self._unsubscribed(msg[1])

    def _left(self, channel: bytes) -> None:
        n = self._leaving.get(channel, 0) - 1
        if n > 0:
            self._leaving[channel] = n
        else:
            self._leaving.pop(channel, None)

    def _unsubscribed(self, channel: bytes) -> None:
        """An unsubscribe we sent, confirmed; or, under a cluster, the server dropping a
        channel whose slot moved away while we still want it."""
        if channel in self._leaving:
            self._left(channel)
        elif channel in self._wanted and self._on_dropped is not None:
            log.info("redis dropped %r (its slot moved): subscribing on its new owner", channel)
            self._wanted.discard(channel)
            self._on_dropped(channel)

    def _refused(self, exc: redis.exceptions.ResponseError) -> None:
        """A subscribe refused (MOVED: this node does not serve the slot, or CLUSTERDOWN): a
        waiting subscribe fails with Redirected; a resubscribed channel goes back to the set."""
        words = str(exc).split()
        slot = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
        log.info("redis refused a subscription: %s", exc)
        hit = {c for c in self._wanted if slot is None or key_slot(c) == slot}
        for channel in hit:
            waiters = self._waiters.pop(channel, None)
            if waiters:  # its subscribe hears of it and asks the link set again
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(Redirected(f"redis: {exc}"))
                continue
            self._wanted.discard(channel)
            if channel in self._resubscribing:
                self._resubscribing.discard(channel)
                if not self._resubscribing:
                    self._linked()
            assert self._on_dropped is not None
            self._on_dropped(channel)

    async def _watch(self, conn: redis.asyncio.Connection) -> None:
        """Ping a quiet link; without any answer for another PING_S, it is lost."""
        seen, pinged = self._received, False
        while True:
            await asyncio.sleep(PING_S)
            if self._received != seen:
                seen, pinged = self._received, False
            elif pinged:
                raise redis.exceptions.TimeoutError("no answer to PING")
            else:
                await conn.send_command("PING", check_health=False)
                pinged = True

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        try:
            self._on_message(channel, data)
        except Exception:  # a bug in one message's handling must not take the link down
            log.exception("failed to handle a message of %r", channel)

    def _confirmed(self, channel: bytes) -> None:
        waiters = self._waiters.get(channel)
        if waiters:
            waiter = waiters.popleft()
            if not waiters:
                del self._waiters[channel]
            if not waiter.done():
                waiter.set_result(None)
        if channel in self._resubscribing:
            self._resubscribing.discard(channel)
            if not self._resubscribing:
                self._linked()


def _buffered(conn: redis.asyncio.Connection) -> Callable[[], list[bytes] | None] | None:
    """A way to take the next message hiredis already parsed from the link's last read, or
    None without hiredis. redis-py reads one message per coroutine call (about 4 µs each, a
    tenth of a fast publisher's CPU per publication, since every publication comes back
    here); a read from the socket holds many. Uses redis-py 8.1's hiredis parser (pinned)."""
    parser = getattr(conn, "_parser", None)
    if not isinstance(parser, _AsyncHiredisParser) or not parser._connected:  # noqa: SLF001
        return None
    reader = parser._reader  # noqa: SLF001
    if reader is None:
        return None

    def take() -> list[bytes] | None:
        msg = reader.gets()
        if msg is NOT_ENOUGH_DATA:
            return None
        if isinstance(msg, BaseException):  # as redis-py's read_response raises them
            raise msg
        return cast(list[bytes], msg)

    return take
