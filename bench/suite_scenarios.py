"""The benchmark scenarios, in the order the write-up lists them, and the baselines they are
compared with."""

from __future__ import annotations

from dataclasses import dataclass

from bench.suite_bodies import (
    churn,
    echo,
    encodings_cost,
    fanout_cost,
    fanout_ramp,
    fast_publisher,
    hold,
)
from bench.suite_tester import Body

#: The baselines, by target name, as the write-up names them.
BASELINES = {"baseline": "bare Tornado", "node": "Node ws"}


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    body: Body
    #: Switchboard processes; above 1 (or with `redis`) they share a Redis. Baselines run one.
    processes: int = 1
    baseline: bool = True
    max_connections: int = 19_000
    #: why a scenario without a baseline has none
    no_baseline: str = (
        "No baseline: one bare-Tornado or Node process cannot hold this many sockets "
        "(20,000 fds per process)."
    )
    redis: bool = False
    #: the shared Redis is a Redis Cluster of 3 primaries and 3 replicas (sharded pub/sub)
    cluster: bool = False
    #: servers on core 0, the tester and Redis on the others (machines with 2 cores or more)
    pinned: bool = False
    #: Switchboard's [mongo] url: memory (the default), or "" for the embedded server
    mongo_url: str = "memory:"


SCENARIOS = [
    Scenario(
        "cost-1k-50",
        "Server CPU per delivery, 1,000 subscribers × 50 publications/s",
        fanout_cost(1000, 50),
        pinned=True,
    ),
    Scenario(
        "cost-10k-5",
        "Server CPU per delivery, 10,000 subscribers × 5 publications/s",
        fanout_cost(10_000, 5),
        max_connections=10_500,
        pinned=True,
    ),
    Scenario(
        "cost-1k-50-redis",
        "Server CPU per delivery, 1,000 subscribers × 50/s, two processes with Redis",
        fanout_cost(1000, 50),
        processes=2,
        baseline=False,
        pinned=True,
        no_baseline="Compare with `cost-1k-50` above: the same load on one process, pinned the "
        "same way (both Switchboard processes on core 0); the baselines have no cross-process "
        "fan-out. Redis's own CPU is not counted.",
    ),
    Scenario(
        "cost-1k-50-cluster",
        "Server CPU per delivery, 1,000 subscribers × 50/s, two processes with a Redis Cluster",
        fanout_cost(1000, 50),
        processes=2,
        baseline=False,
        pinned=True,
        cluster=True,
        no_baseline="Compare with `cost-1k-50-redis` above: the same load and pinning through "
        "one Redis. The cluster's CPU per SPUBLISH, per shard, is in the notes.",
    ),
    Scenario(
        "p99-10k-10",
        "Latency at 10,000 subscribers × 10 publications/s",
        fanout_cost(10_000, 10),
        max_connections=10_500,
    ),
    Scenario(
        "cost-encodings",
        "Server CPU and bytes per delivery, JSON then MessagePack, 1,000 subscribers × 20/s",
        encodings_cost(1000, 20),
        baseline=False,
        no_baseline="Its JSON half is `cost-1k-50` above at 20/s; the baselines have no "
        "MessagePack subprotocol.",
    ),
    Scenario(
        "hold-19900",
        "19,900 held connections with tokens and subscriptions, one process",
        hold(19_900),
        max_connections=19_950,
    ),
    Scenario(
        "connect-10k",
        "Connection setup: 10,000 connections asked at 8,000/s, each with a token, hello and a "
        "subscribe",
        hold(10_000, rate=8000),
        max_connections=10_500,
        pinned=True,
    ),
    Scenario(
        "hold-40k-redis",
        "40,000 held connections with tokens and subscriptions, three processes with Redis",
        hold(40_000),
        processes=3,
        baseline=False,
        max_connections=19_500,
    ),
    Scenario(
        "publisher-redis",
        "One WebSocket connection publishing through Redis (one process)",
        fast_publisher(1),
        redis=True,
        baseline=False,
        no_baseline="No baseline: the baselines acknowledge a publish without Redis.",
    ),
    Scenario(
        "publisher-durable",
        "One WebSocket connection publishing to 20 channels whose history the embedded MongoDB "
        "server keeps, each publication acknowledged once stored (one process)",
        fast_publisher(20),
        baseline=False,
        no_baseline="No baseline: the baselines keep no history.",
        mongo_url="",
    ),
    Scenario(
        "fanout-1k",
        "Fan-out to 1,000 subscribers at rising rates",
        fanout_ramp(1000, [10, 20, 50, 100, 200, 400, 800]),
    ),
    Scenario(
        "fanout-10k",
        "Fan-out to 10,000 subscribers at rising rates",
        fanout_ramp(10_000, [1, 2, 5, 10, 20, 40, 80]),
        max_connections=10_500,
    ),
    Scenario("echo-100", "Echo (ping round trips) with 100 clients", echo),
    Scenario("churn-500", "Churn of 500 connections/s under fan-out", churn),
]
