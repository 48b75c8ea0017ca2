"""A resubscribe storm through Redis stays within one pipeline: nothing refused for want of
connections (redis-py's pool holds 100), no presence clean-up skipped."""

from __future__ import annotations

import asyncio

import pytest

from server.app import build_node
from server.broker import redis_conn
from tests.node_client import NodeClient
from tests.support import make_config

pytestmark = pytest.mark.asyncio


async def test_a_thousand_subscribes_at_once_with_presence_are_all_served(
    redis_url: str, redis_prefix: str
) -> None:
    node = build_node(make_config(redis={"url": redis_url, "prefix": redis_prefix}))
    admin = redis_conn.client(redis_url)
    await node.start()
    try:
        clients = [NodeClient(f"c{i}") for i in range(1000)]
        for c in clients:
            node.hub.add_client(c)
        outcomes = await asyncio.gather(
            *(node.subscribe(c, f"room{i % 50}", None) for i, c in enumerate(clients)),
            return_exceptions=True,
        )
        assert not [o for o in outcomes if isinstance(o, BaseException)]
        counts = [len((await node.presence_of(f"room{r}"))["clients"]) for r in range(50)]
        assert counts == [20] * 50
        await asyncio.gather(*(node.client_gone(c) for c in clients))
        for _ in range(100):  # clean-ups run in the background, none skipped
            left = await admin.eval(
                "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                "n = n + redis.call('HLEN', k) end return n",
                0,
                f"{redis_prefix}:presence:*",
            )
            if left == 0:
                break
            await asyncio.sleep(0.05)
        assert left == 0
    finally:
        await node.close()
        await admin.aclose()
