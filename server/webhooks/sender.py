"""The sender: POSTs queued events to `[webhooks] url`, signed, until each is accepted.

Any 2xx answer accepts an event. Anything else (another status, a refused connection, no answer
within `timeout_s`) is retried after a capped exponential backoff with equal jitter
(`backoff_min_s` doubling up to `backoff_max_s`), for `retry_for_s` after the event was made;
then it is dropped with a warning. The queue hands out only heads of keys, so a user's or a
channel's events go out one at a time and in order; events of different keys go in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import tornado.httpclient

from server.config import WebhooksConfig
from server.store.base import StoreUnavailable
from server.waits import woken
from server.webhooks import events
from server.webhooks.queue import EventQueue, Queued

log = logging.getLogger("switchboard.webhooks")

#: Events sent at once by one process (each of a different key).
BATCH = 32
#: Events made by other processes are looked for at least this often.
POLL_S = 2.0
#: The shortest wait between two empty claims (another process took what was due).
MIN_WAIT_S = 0.02


def retry_delay(config: WebhooksConfig, attempts: int) -> float:
    """The wait before attempt `attempts + 1`: capped exponential, with equal jitter."""
    delay = min(config.backoff_max_s, config.backoff_min_s * 2.0 ** min(attempts - 1, 30))
    return delay / 2 + random.uniform(0, delay / 2)


class Sender:
    def __init__(self, config: WebhooksConfig, queue: EventQueue) -> None:
        self._config = config
        self._queue = queue
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: tornado.httpclient.AsyncHTTPClient | None = None
        #: A lease outlasts an attempt: another process takes the event only if this one died.
        self.lease_s = config.timeout_s + 5.0
        self.sent = 0
        self.failed = 0
        self._in_flight: dict[str, Queued] = {}

    def start(self) -> None:
        self._http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=BATCH)
        self._task = asyncio.ensure_future(self._run())

    def wake(self) -> None:
        """An event was queued here: look at once rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop sending; events cut off mid-attempt are handed back at once, not after their
        lease, so a restarted process (or another one) sends them without delay."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for queued in list(self._in_flight.values()):
            try:
                await asyncio.wait_for(
                    self._queue.retry(queued.event, time.time(), queued.attempts), 1.0
                )
            except (StoreUnavailable, TimeoutError):
                pass  # its lease runs out instead
        self._in_flight.clear()
        if self._http is not None:
            self._http.close()
            self._http = None

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                batch = await self._queue.claim(time.time(), self.lease_s, BATCH)
                if batch:
                    await asyncio.gather(*(self._deliver(q) for q in batch))
                    failures = 0
                    continue
                due = await self._queue.next_due()
                failures = 0
            except StoreUnavailable as exc:
                log.warning("webhooks: queue unavailable: %s", exc)
                due, failures = None, failures + 1
                await asyncio.sleep(min(POLL_S, 0.1 * 2**failures))
            wait = POLL_S if due is None else min(POLL_S, max(MIN_WAIT_S, due - time.time()))
            await woken(self._wake, wait)

    async def _deliver(self, queued: Queued) -> None:
        event = queued.event
        self._in_flight[event.id] = queued
        problem = await self._post(event)
        del self._in_flight[event.id]
        try:
            if problem is None:
                self.sent += 1
                await self._queue.done(event)
                return
            self.failed += 1
            attempts = queued.attempts + 1
            if time.time() - event.created > self._config.retry_for_s:
                log.warning(
                    "webhooks: %s %s dropped after %d attempts: %s",
                    event.type,
                    event.id,
                    attempts,
                    problem,
                )
                await self._queue.done(event)
                return
            delay = retry_delay(self._config, attempts)
            log.info(
                "webhooks: %s %s failed (%s), retry in %.1f s", event.type, event.id, problem, delay
            )
            await self._queue.retry(event, time.time() + delay, attempts)
        except StoreUnavailable as exc:
            log.warning("webhooks: %s not recorded (%s): sent again after its lease", event.id, exc)

    async def _post(self, event: events.Event) -> str | None:
        """POST one event; None when accepted, else what went wrong."""
        assert self._http is not None
        request = tornado.httpclient.HTTPRequest(
            self._config.url,
            method="POST",
            body=event.body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Switchboard-Webhooks",
                events.SIGNATURE_HEADER: events.signature(self._config.secret, event.body),
                events.ID_HEADER: event.id,
                events.TYPE_HEADER: event.type,
            },
            connect_timeout=self._config.timeout_s,
            request_timeout=self._config.timeout_s,
            follow_redirects=False,
        )
        try:
            response = await self._http.fetch(request, raise_error=False)
        except Exception as exc:  # DNS, TLS, refused: all mean "try again later"
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.code < 300:
            return None
        return f"HTTP {response.code}"
