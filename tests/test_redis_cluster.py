"""Switchboard processes over a real Redis Cluster: 3 primaries, 3 replicas, redis-cli-made.

Channels on every shard arrive in order across two processes; a primary killed under load is
replaced by its replica and nothing acknowledged is lost; a slot moved by `redis-cli --cluster
reshard` under load keeps delivering. The store is the MongoDB-compatible server, shared by both
processes, so recovery reads one history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import tornado.httpclient
from redis.crc import key_slot

from server.config import MongoConfig
from tests.fixtures.server_processes import ServerProcess
from tests.redis_cluster import RedisClusterProcess, Shard, channel_in_slot
from tests.support import API_KEY, WsClient, ws_open

Start = Callable[..., ServerProcess]


def cluster_env(mongo: MongoConfig) -> dict[str, str]:
    return {
        "SWITCHBOARD_REDIS_CLUSTER": "true",
        "SWITCHBOARD_MONGO_URL": mongo.url,
        "SWITCHBOARD_MONGO_DATABASE": mongo.database,
    }


def two_processes(
    start: Start, cluster: RedisClusterProcess, prefix: str, mongo: MongoConfig
) -> tuple[ServerProcess, ServerProcess]:
    a, b = (start(cluster.url, prefix, env=cluster_env(mongo)) for _ in range(2))
    a.wait_ready()
    b.wait_ready()
    return a, b


def channels_per_shard(shards: list[Shard], per_shard: int) -> dict[str, list[str]]:
    """Channels whose slots lie in each primary's ranges, spread over the range."""
    found: dict[str, list[str]] = {}
    for shard in shards:
        lo, hi = shard.slots[0]
        step = max(1, (hi - lo) // per_shard)
        found[shard.id] = [channel_in_slot(lo + i * step) for i in range(per_shard)]
    return found


class Publisher:
    """Publishes 0, 1, 2... to each channel in turn; keeps what was acknowledged, and when."""

    def __init__(self, client: WsClient, channels: list[str]) -> None:
        self.client = client
        self.channels = channels
        self.acked: dict[str, list[int]] = {c: [] for c in channels}
        self.acked_at: dict[str, list[float]] = {c: [] for c in channels}
        self.refused = 0
        self.running = True

    async def run(self) -> None:
        n = 0
        while self.running:
            for channel in self.channels:
                reply = await self.client.call("publish", channel=channel, data=n)
                if "error" in reply:
                    assert reply["error"]["code"] == "unavailable", reply
                    self.refused += 1
                else:
                    self.acked[channel].append(n)
                    self.acked_at[channel].append(time.monotonic())
            n += 1
            await asyncio.sleep(0.01)


class Subscriber:
    """Subscribed to channels; on `unsubscribed` resubscribes from the last offset it saw."""

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.got: dict[str, list[int]] = {}
        self.offsets: dict[str, list[int]] = {}
        self.position: dict[str, dict[str, Any]] = {}
        self.resubscribed = 0
        self.unrecovered: list[str] = []

    async def subscribe(self, channel: str, since: dict[str, Any] | None = None) -> None:
        args = {"since": since} if since else {}
        result = await self.client.ok("subscribe", channel=channel, **args)
        if since and not result["recovered"]:
            self.unrecovered.append(channel)
        self.got.setdefault(channel, []).extend(p["data"] for p in result["missed"])
        self.position[channel] = {"offset": result["offset"], "epoch": result["epoch"]}

    async def run(self) -> None:
        while True:
            push = await self.client.push(timeout=60)
            channel = push.get("channel", "")
            if push.get("push") == "pub":
                self.got[channel].append(push["data"])
                self.offsets.setdefault(channel, []).append(push["offset"])
                self.position[channel]["offset"] = push["offset"]
            elif push.get("push") == "unsubscribed":
                self.resubscribed += 1
                await self.subscribe(channel, since=dict(self.position[channel]))


def assert_reseeded(sub: Subscriber, channel: str) -> None:
    """The position a dead or former owner wrote was not continued: the channel went on past
    the unstored window (the offsets between were made void, and recovery crossed them)."""
    offsets = sub.offsets[channel]
    assert any(b - a > 64 for a, b in zip(offsets, offsets[1:], strict=False)), offsets


def assert_nothing_acknowledged_lost(pub: Publisher, sub: Subscriber) -> None:
    assert not sub.unrecovered, f"subscriptions not recovered: {sub.unrecovered}"
    for channel, acked in pub.acked.items():
        got = sub.got.get(channel, [])
        missing = sorted(set(acked) - set(got))
        assert not missing, f"{channel}: acknowledged but never delivered: {missing[:20]}"
        assert len(got) == len(set(got)), f"{channel}: a publication arrived twice"
        assert got == sorted(got), f"{channel}: out of order"


async def run_load(pub: Publisher, sub: Subscriber, during: Callable[[], Any]) -> None:
    """Publish and receive while `during` (a blocking operation) runs in a thread."""
    tasks = [asyncio.ensure_future(pub.run()), asyncio.ensure_future(sub.run())]
    try:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(during)
        await asyncio.sleep(1.5)
        pub.running = False
        await asyncio.sleep(2.5)  # room for the last resync's hole wait
        for task in tasks:
            if task.done():
                task.result()  # a failed assertion inside surfaces here
    finally:
        for task in tasks:
            task.cancel()


@pytest.mark.asyncio
async def test_channels_on_every_shard_arrive_in_order_across_two_processes(
    server_processes: Start,
    redis_cluster: RedisClusterProcess,
    redis_prefix: str,
    mongo_config: MongoConfig,
) -> None:
    a, b = two_processes(server_processes, redis_cluster, redis_prefix, mongo_config)
    shards = redis_cluster.shards()
    assert len(shards) == 3
    by_shard = channels_per_shard(shards, 3)
    for shard in shards:  # each primary owns some of the channels
        assert all(shard.owns(key_slot(c.encode())) for c in by_shard[shard.id])
    channels = [c for cs in by_shard.values() for c in cs]
    sub, pub = await ws_open(a.ws_url), await ws_open(b.ws_url)
    for channel in channels:
        await sub.ok("subscribe", channel=channel)
    replies = await asyncio.gather(
        *(pub.call("publish", channel=c, data=i) for i in range(40) for c in channels)
    )
    assert all("error" not in r for r in replies), replies[:3]
    got: dict[str, list[tuple[int, int]]] = {c: [] for c in channels}
    for _ in range(40 * len(channels)):
        push = await sub.push(timeout=10)
        got[push["channel"]].append((push["offset"], push["data"]))
    for channel in channels:
        offsets = [o for o, _ in got[channel]]
        assert offsets == list(range(offsets[0], offsets[0] + 40)), channel  # in order, no gap
        assert sorted(d for _, d in got[channel]) == list(range(40))
    # Both processes' figures, summed through the cluster (`{stats}` lives on one shard).
    # B's figures reach Redis with its next heartbeat (a third of the presence expiry).
    deadline = time.monotonic() + 5
    while True:
        resp = await tornado.httpclient.AsyncHTTPClient().fetch(
            a.base_url + "/api/stats", headers={"Authorization": f"apikey {API_KEY}"}
        )
        total = orjson.loads(resp.body)["total"]
        if total["publications"] == 40 * len(channels) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert total["processes"] == 2
    assert total["publications"] == 40 * len(channels)
    # Presence of a channel on each shard is seen from the other process.
    for shard_channels in by_shard.values():
        who = await pub.ok("presence", channel=shard_channels[0])
        assert list(who["clients"]) == [sub.hello["client"]]
    await sub.close()
    await pub.close()


@pytest.mark.asyncio
async def test_a_killed_primary_is_replaced_and_nothing_acknowledged_is_lost(
    server_processes: Start,
    own_redis_cluster: RedisClusterProcess,
    redis_prefix: str,
    mongo_config: MongoConfig,
) -> None:
    cluster = own_redis_cluster
    a, b = two_processes(server_processes, cluster, redis_prefix, mongo_config)
    shards = cluster.shards()
    channels = [cs[0] for cs in channels_per_shard(shards, 1).values()]
    victim = shards[0]
    sub = Subscriber(await ws_open(a.ws_url))
    pub = Publisher(await ws_open(b.ws_url), channels)
    for channel in channels:
        await sub.subscribe(channel)
    killed_at = 0.0

    def kill_and_wait_for_the_replica() -> None:
        nonlocal killed_at
        cluster.node_at(victim.port).kill()
        killed_at = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                now = cluster.shards()
                if len(now) == 3 and all(s.port != victim.port for s in now):
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError("no replica took over")

    await run_load(pub, sub, kill_and_wait_for_the_replica)
    moved = channels[0]
    assert key_slot(moved.encode()) in range(victim.slots[0][0], victim.slots[0][1] + 1)
    late = [t for t in pub.acked_at[moved] if t > killed_at]
    assert len(late) > 10, "publications on the failed shard did not resume"
    for other in channels[1:]:  # the other shards kept going meanwhile
        assert len([t for t in pub.acked_at[other] if t > killed_at]) > len(late)
    assert_nothing_acknowledged_lost(pub, sub)
    assert_reseeded(sub, moved)
    assert a.proc.poll() is None and b.proc.poll() is None
    await sub.client.close()
    await pub.client.close()


@pytest.mark.asyncio
async def test_a_slot_moved_by_reshard_under_load_keeps_delivering(
    server_processes: Start,
    own_redis_cluster: RedisClusterProcess,
    redis_prefix: str,
    mongo_config: MongoConfig,
) -> None:
    cluster = own_redis_cluster
    a, b = two_processes(server_processes, cluster, redis_prefix, mongo_config)
    source, target = cluster.shards()[:2]
    slot = source.slots[0][0]  # redis-cli moves a source's lowest slots first
    moving, staying = channel_in_slot(slot), channel_in_slot(target.slots[0][0])
    sub = Subscriber(await ws_open(a.ws_url))
    pub = Publisher(await ws_open(b.ws_url), [moving, staying])
    for channel in (moving, staying):
        await sub.subscribe(channel)
    moved_at = 0.0

    def reshard() -> None:
        nonlocal moved_at
        cluster.reshard(source, target, 1)
        moved_at = time.monotonic()

    await run_load(pub, sub, reshard)
    assert cluster.owner(slot).id == target.id, "the slot did not move"
    late = [t for t in pub.acked_at[moving] if t > moved_at]
    assert len(late) > 10, "publications on the moved slot did not resume"
    assert_nothing_acknowledged_lost(pub, sub)
    assert_reseeded(sub, moving)
    await sub.client.close()
    await pub.client.close()
