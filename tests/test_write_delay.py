"""`[server] write_delay_ms`: pushes wait to share a write; replies never wait.

The outbox tests read the peer of a socketpair without blocking: nothing may be there before the
delay has passed, and then every frame queued meanwhile arrives, in order.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from server.config import Config, ConfigError
from server.ws.outbox import Flusher, Outbox
from tests.support import RunningServer, WsClient, http, make_config

Wired = Callable[[Flusher], tuple[Outbox, socket.socket]]


@pytest.fixture
def wired() -> Iterator[Wired]:
    """Outboxes on one end of a socketpair each, with the other end to read from."""
    socks: list[socket.socket] = []

    def outbox(flusher: Flusher) -> tuple[Outbox, socket.socket]:
        ours, peer = socket.socketpair()
        for sock in (ours, peer):
            sock.setblocking(False)
            socks.append(sock)
        return Outbox(ours, asyncio.get_running_loop(), 1 << 20, flusher), peer

    yield outbox
    for sock in socks:
        sock.close()


def received(peer: socket.socket) -> bytes:
    try:
        return peer.recv(1 << 16)
    except BlockingIOError:
        return b""


@pytest.mark.asyncio
async def test_pushes_wait_for_the_delay_and_leave_together(wired: Wired) -> None:
    outbox, peer = wired(Flusher(0.3))
    outbox.send(b"one")
    await asyncio.sleep(0.05)
    outbox.send(b"two")  # a later loop iteration, within the delay
    await asyncio.sleep(0.05)
    assert received(peer) == b""
    await asyncio.sleep(0.4)
    assert received(peer) == b"onetwo"


@pytest.mark.asyncio
async def test_without_a_delay_a_push_leaves_in_its_own_iteration(wired: Wired) -> None:
    outbox, peer = wired(Flusher())
    outbox.send(b"one")
    await asyncio.sleep(0.05)
    assert received(peer) == b"one"


@pytest.mark.asyncio
async def test_a_reply_takes_what_is_queued_with_it_and_later_pushes_wait_again(
    wired: Wired,
) -> None:
    outbox, peer = wired(Flusher(0.5))
    outbox.send(b"push")
    outbox.reply(b"reply")
    await asyncio.sleep(0.05)
    assert received(peer) == b"pushreply"
    outbox.send(b"later")
    await asyncio.sleep(0.05)
    assert received(peer) == b""
    await asyncio.sleep(0.6)
    assert received(peer) == b"later"


@pytest.mark.parametrize("value", [-1, 1001])
def test_a_delay_out_of_range_is_refused(value: float) -> None:
    with pytest.raises(ConfigError, match=r"server.write_delay_ms: .*0 to 1000"):
        make_config(server={"write_delay_ms": value})


Connect = Callable[..., Awaitable[WsClient]]


@pytest.mark.asyncio
@pytest.mark.parametrize("config", [make_config(server={"write_delay_ms": 400})])
async def test_a_server_with_a_delay_delays_publications_but_not_replies(
    config: Config, app: RunningServer, ws_connect: Connect
) -> None:
    client = await ws_connect()
    started = time.monotonic()
    await client.ok("subscribe", channel="quiet:delayed")
    assert time.monotonic() - started < 0.3  # the reply did not wait
    status, _ = await http(
        app, "POST", "/api/publish", {"channel": "quiet:delayed", "data": {"n": 1}}
    )
    assert status == 200
    published = time.monotonic()
    push = await client.push_of("pub")
    assert push["data"] == {"n": 1}
    assert time.monotonic() - published >= 0.3  # queued before the POST's reply: ~0.4 s


@pytest.mark.asyncio
@pytest.mark.parametrize("config", [make_config(server={"write_delay_ms": 50})])
async def test_publications_that_wait_together_arrive_whole_and_in_order(
    config: Config, app: RunningServer, ws_connect: Connect
) -> None:
    client = await ws_connect()
    await client.ok("subscribe", channel="quiet:batched")
    for n in range(30):
        status, _ = await http(
            app, "POST", "/api/publish", {"channel": "quiet:batched", "data": {"n": n}}
        )
        assert status == 200
    pushes = [await client.push_of("pub") for _ in range(30)]
    assert [p["data"]["n"] for p in pushes] == list(range(30))
    offsets = [p["offset"] for p in pushes]
    assert offsets == list(range(offsets[0], offsets[0] + 30))
