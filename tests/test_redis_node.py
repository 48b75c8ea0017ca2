"""A node on the Redis broker: a lost pub/sub link never leaves a silent gap."""

from __future__ import annotations

import asyncio

import pytest

from server.broker import redis_conn
from tests.fixtures.redis import redis_broker
from tests.support import make_config, start_server, ws_open


@pytest.mark.asyncio
async def test_a_subscription_that_saw_nothing_yet_recovers_after_a_lost_link(
    redis_url: str, redis_prefix: str
) -> None:
    server = await start_server(make_config(redis={"url": redis_url, "prefix": redis_prefix}))
    other = redis_broker(redis_url, redis_prefix)  # another process publishing meanwhile
    admin = redis_conn.client(redis_url)
    client = await ws_open(server.ws_url)
    try:
        await other.start(server.node)  # its handler is never called: it subscribes nothing
        start = await client.ok("subscribe", channel="news")
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await other.publish("news", b'{"channel":"news","data":"missed","ts":1}', 100, 60)
        await asyncio.sleep(0.5)  # the link is back by now
        await other.publish("news", b'{"channel":"news","data":"later","ts":2}', 100, 60)
        push = await client.push()
        assert push.get("push") == "unsubscribed" or push.get("offset") == start["offset"] + 1, (
            f"a publication was skipped without telling the client: {push}"
        )
    finally:
        await client.close()
        await other.close()
        await admin.aclose()
        await server.stop()
