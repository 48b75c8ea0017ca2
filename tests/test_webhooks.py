"""Webhooks in one process, against a real HTTP receiver that checks every signature: events are
retried until accepted, debounced, in order per user and channel, and survive a restart queued
in MongoDB. The queues' contract runs over the in-memory and the MongoDB implementation."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from server import auth
from server.config import ConfigError, MongoConfig
from server.webhooks import events
from server.webhooks.claims import MemoryClaims
from server.webhooks.events import SeqClock
from server.webhooks.mongo_queue import MongoQueue
from server.webhooks.queue import EventQueue, MemoryQueue
from server.webhooks.sender import Sender
from server.webhooks.tracker import Tracker
from tests.fixtures.mongo import drop_database, fresh_config
from tests.support import TOKEN_SECRET, http, make_config, start_server, ws_open
from tests.webhook_receiver import SECRET, Receiver

ROOT = Path(__file__).resolve().parent.parent
DEBOUNCE_S = 0.4


def hooks(url: str, **more: Any) -> dict[str, Any]:
    return {
        "url": url,
        "secret": SECRET,
        "offline_after_s": DEBOUNCE_S,
        "backoff_min_s": 0.05,
        "backoff_max_s": 0.2,
        **more,
    }


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    await r.stop()


def token(user: str) -> str:
    return "?token=" + auth.mint_token(TOKEN_SECRET, user, 60, user.title())


@pytest.mark.asyncio
async def test_events_are_signed_retried_until_accepted_and_in_order(receiver: Receiver) -> None:
    receiver.fail_first = 3
    server = await start_server(make_config(webhooks=hooks(receiver.url)))
    try:
        ada = await ws_open(server.ws_url + token("ada"))
        await ada.ok("subscribe", channel="room")
        await receiver.wait_for(2)
        left_at = time.monotonic()
        await ada.close()
        await receiver.wait_for(4)
    finally:
        await server.stop()
    assert receiver.of("user", "ada") == ["user.online", "user.offline"]
    assert receiver.of("channel", "room") == ["channel.occupied", "channel.vacated"]
    for event in receiver.accepted[2:]:
        assert event["_received"] - left_at >= DEBOUNCE_S  # debounced, not at once
    assert len(receiver.attempts) == 4 + 3  # the refused attempts were retried
    assert len({e["id"] for e in receiver.accepted}) == 4
    assert receiver.bad_signatures == 0
    for event in receiver.accepted:
        assert set(event) - {"_received"} == {"id", "type", "time", "data"}
        assert re.fullmatch(r"evt_[0-9a-f]{24}", event["id"])


@pytest.mark.asyncio
async def test_a_reconnect_within_the_debounce_sends_nothing(receiver: Receiver) -> None:
    server = await start_server(
        make_config(webhooks=hooks(receiver.url, events=["user.online", "user.offline"]))
    )
    try:
        first = await ws_open(server.ws_url + token("bob"))
        await receiver.wait_for(1)
        await first.close()
        await asyncio.sleep(DEBOUNCE_S / 4)
        second = await ws_open(server.ws_url + token("bob"))  # a reloaded tab
        await asyncio.sleep(DEBOUNCE_S * 2)
        assert receiver.of("user", "bob") == ["user.online"]
        await second.close()
        await receiver.wait_for(2)
    finally:
        await server.stop()
    assert receiver.of("user", "bob") == ["user.online", "user.offline"]


@pytest.mark.asyncio
async def test_publications_of_opted_in_namespaces_are_sent_in_order(receiver: Receiver) -> None:
    cfg = make_config(
        webhooks=hooks(receiver.url, events=["publication"]),
        namespaces={
            "hooked": {"history_size": 10, "history_ttl_s": 60, "webhook_publications": True}
        },
    )
    server = await start_server(cfg)
    try:
        for i in range(5):
            code, _ = await http(server, "POST", "/api/publish", {"channel": "hooked:x", "data": i})
            assert code == 200
        await http(server, "POST", "/api/publish", {"channel": "room", "data": "not sent"})
        got = await receiver.wait_for(5)
        await asyncio.sleep(0.2)
    finally:
        await server.stop()
    assert len(receiver.accepted) == 5
    assert [e["data"]["data"] for e in got] == [0, 1, 2, 3, 4]
    assert [e["data"]["offset"] for e in got] == [1, 2, 3, 4, 5]
    assert {e["type"] for e in got} == {"publication"}
    assert got[0]["data"]["channel"] == "hooked:x" and got[0]["data"]["epoch"]


@pytest.mark.asyncio
async def test_events_waiting_in_mongodb_are_sent_after_a_restart(
    receiver: Receiver, mongo_config: MongoConfig
) -> None:
    down = Receiver()
    await down.stop()  # nothing listens there now: every attempt fails
    mongo = {"url": mongo_config.url, "database": mongo_config.database}
    namespaces = {"hooked": {"history_size": 10, "history_ttl_s": 60, "webhook_publications": True}}
    first = await start_server(
        make_config(
            webhooks=hooks(down.url, events=["publication"]), mongo=mongo, namespaces=namespaces
        )
    )
    for i in range(3):
        code, _ = await http(first, "POST", "/api/publish", {"channel": "hooked:x", "data": i})
        assert code == 200
    await asyncio.sleep(0.3)
    extras: Any = first.node.extension
    assert await extras.webhooks.queue.size() == 3
    await first.stop()

    second = await start_server(
        make_config(
            webhooks=hooks(receiver.url, events=["publication"]), mongo=mongo, namespaces=namespaces
        )
    )
    try:
        got = await receiver.wait_for(3, timeout=20)
        await asyncio.sleep(0.2)
        assert await second.node.extension.webhooks.queue.size() == 0  # type: ignore[union-attr]
    finally:
        await second.stop()
    assert [e["data"]["data"] for e in got] == [0, 1, 2]
    assert len(receiver.accepted) == 3


def test_a_signature_covers_the_body_and_the_secret() -> None:
    body = b'{"id":"evt_1","type":"user.online","time":1,"data":{"user":"42"}}'
    header = events.signature(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert events.verify(SECRET, body, header)
    assert not events.verify(SECRET, body.replace(b"42", b"43"), header)
    assert not events.verify(SECRET + "x", body, header)


def test_the_documented_verification_snippet_works() -> None:
    doc = (ROOT / "docs" / "webhooks.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", doc, re.S)
    assert snippet is not None
    scope: dict[str, Any] = {}
    exec(snippet.group(1), scope)
    body = b'{"id":"evt_2","type":"user.offline","time":2,"data":{"user":"7"}}'
    assert scope["verify"](SECRET.encode(), body, events.signature(SECRET, body))
    assert not scope["verify"](SECRET.encode(), body + b" ", events.signature(SECRET, body))


# -- the queues' contract ---------------------------------------------------------------------


@pytest_asyncio.fixture(params=["memory", "mongo"])
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[EventQueue]:
    if request.param == "memory":
        yield MemoryQueue()
        return
    config = fresh_config(request.getfixturevalue("mongo_url"))
    q = MongoQueue(config)
    await q.start()
    yield q
    await q.close()
    await drop_database(config)


def event(key: str, seq: int) -> events.Event:
    return events.make("publication", {"n": seq}, key, seq)


@pytest.mark.asyncio
async def test_queue_hands_out_one_head_per_key_and_holds_the_rest(queue: EventQueue) -> None:
    a1, a2, b1 = event("a", 1), event("a", 2), event("b", 3)
    for e in (a2, b1, a1):  # put out of order: seq decides
        await queue.put(e)
    now = time.time()
    first = await queue.claim(now, 30, 10)
    assert [q.event.id for q in first] == [a1.id, b1.id]
    assert await queue.claim(now, 30, 10) == []  # leased: nobody else gets them
    await queue.retry(a1, now + 0.2, 1)
    await queue.done(b1)
    assert await queue.claim(time.time(), 30, 10) == []  # a2 waits behind a1's retry
    await asyncio.sleep(0.25)
    again = await queue.claim(time.time(), 30, 10)
    assert [(q.event.id, q.attempts) for q in again] == [(a1.id, 1)]
    await queue.done(a1)
    after = await queue.claim(time.time(), 30, 10)
    assert [q.event.id for q in after] == [a2.id]
    assert after[0].event.body == a2.body
    await queue.done(a2)
    assert await queue.size() == 0 and await queue.next_due() is None


@pytest.mark.asyncio
async def test_queue_hands_out_again_an_event_whose_lease_ran_out(queue: EventQueue) -> None:
    e = event("k", 1)
    await queue.put(e)
    assert len(await queue.claim(time.time(), 0.1, 5)) == 1
    assert await queue.claim(time.time(), 0.1, 5) == []
    await asyncio.sleep(0.15)
    assert [q.event.id for q in await queue.claim(time.time(), 0.1, 5)] == [e.id]


@pytest.mark.parametrize(
    ("webhooks", "message"),
    [
        ({"url": "ftp://x"}, "webhooks.url"),
        ({"url": "http://127.0.0.1/hook"}, "webhooks.secret"),
        ({"events": ["user.online", "user.away"]}, "webhooks.events"),
        ({"offline_after_s": -1}, "webhooks.offline_after_s"),
        ({"backoff_min_s": 10, "backoff_max_s": 1}, "webhooks.backoff_max_s"),
    ],
)
def test_webhook_settings_are_checked(webhooks: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_config(webhooks=webhooks)


@pytest.mark.asyncio
async def test_stopping_as_the_sender_is_woken_still_stops() -> None:
    """On Python 3.11 `asyncio.wait_for` drops a cancellation that arrives just as what it
    waits for completes: a `wake` (an event queued) in the same loop turn as `stop` (the server
    shutting down) left the sender looping and `stop` waiting for it forever (a test run hung
    in CI)."""
    config = make_config(webhooks=hooks("http://127.0.0.1:9/hook")).webhooks
    sender = Sender(config, MemoryQueue())
    sender.start()
    await asyncio.sleep(0.05)  # idle: waiting to be woken or for the next poll
    sender.wake()
    stopping = asyncio.ensure_future(sender.stop())
    done, _ = await asyncio.wait({stopping}, timeout=3)  # not cancelled: stop swallows that
    assert done, "stop() did not return"


@pytest.mark.asyncio
async def test_stopping_as_the_tracker_is_woken_still_stops() -> None:
    """The presence tracker's loop has the same shape as the sender's (see above)."""
    tracker = Tracker(MemoryClaims(0.1, SeqClock()), lambda *change: None, 60.0, 60.0)
    tracker.start()
    await asyncio.sleep(0.05)
    tracker.channel_occupied("room")  # wakes it
    stopping = asyncio.ensure_future(tracker.stop())
    done, _ = await asyncio.wait({stopping}, timeout=3)
    assert done, "stop() did not return"
