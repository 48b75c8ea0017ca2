"""Webhooks across two real processes sharing Redis and MongoDB: a user with connections on both
goes online once and offline once, reconnects inside the debounce send nothing, and a user of a
killed process goes offline through the survivor."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from server import auth
from tests.fixtures.server_processes import ServerProcess
from tests.redis_server import TEST_TTL_S
from tests.support import TOKEN_SECRET, WsClient, ws_open
from tests.webhook_receiver import SECRET, Receiver

DEBOUNCE_S = 1.0


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    await r.stop()


@pytest.mark.asyncio
async def test_online_and_offline_once_across_processes_through_redis(
    server_processes: Callable[..., ServerProcess],
    redis_url: str,
    redis_prefix: str,
    mongo_url: str,
    receiver: Receiver,
) -> None:
    env = {
        "SWITCHBOARD_WEBHOOKS_URL": receiver.url,
        "SWITCHBOARD_WEBHOOKS_SECRET": SECRET,
        "SWITCHBOARD_WEBHOOKS_EVENTS": "user.online,user.offline",
        "SWITCHBOARD_WEBHOOKS_OFFLINE_AFTER_S": str(DEBOUNCE_S),
        "SWITCHBOARD_WEBHOOKS_BACKOFF_MIN_S": "0.05",
        "SWITCHBOARD_WEBHOOKS_BACKOFF_MAX_S": "0.2",
        "SWITCHBOARD_MONGO_URL": mongo_url,
        "SWITCHBOARD_MONGO_DATABASE": f"hooks_{secrets.token_hex(4)}",
        "SWITCHBOARD_SECURITY_TOKEN_SECRET": TOKEN_SECRET,
    }
    a, b = (server_processes(redis_url, redis_prefix, env=env) for _ in range(2))
    a.wait_ready()
    b.wait_ready()

    def as_user(server: ServerProcess, user: str) -> str:
        return f"{server.ws_url}?token={auth.mint_token(TOKEN_SECRET, user, 60)}"

    tabs: list[WsClient] = []
    try:
        tabs.append(await ws_open(as_user(a, "ada")))
        await receiver.wait_for(1)
        tabs.append(await ws_open(as_user(b, "ada")))  # a second tab, on the other process
        for tab in tabs:
            await tab.close()
        await asyncio.sleep(0.2)
        tabs = [await ws_open(as_user(b, "ada"))]  # both reloaded within the debounce
        tabs.append(await ws_open(as_user(a, "ada")))
        await asyncio.sleep(DEBOUNCE_S + 0.5)
        assert receiver.of("user", "ada") == ["user.online"]
        for tab in tabs:
            await tab.close()
        tabs = []
        await receiver.wait_for(2)

        bob = await ws_open(as_user(b, "bob"))
        await receiver.wait_for(3)
        await asyncio.sleep(0.5)  # B has recorded that bob's event went out
        b.proc.kill()  # no goodbye: bob's claim lapses with the process's heartbeat
        b.proc.wait()
        await receiver.wait_for(4, timeout=TEST_TTL_S + DEBOUNCE_S + 8)
        await bob.close()
        await asyncio.sleep(0.5)
    finally:
        for tab in tabs:
            await tab.close()
    assert receiver.of("user", "ada") == ["user.online", "user.offline"]
    assert receiver.of("user", "bob") == ["user.online", "user.offline"]
    assert len({e["id"] for e in receiver.accepted}) == len(receiver.accepted) == 4
    assert receiver.bad_signatures == 0
