"""The faults the chaos scenario injects, one at a time, as an operator (or the kernel) would.

Each fault returns when it has been fully applied: the killed worker replaced, every worker of
the rolling restart replaced, the restarted service answering again. What the clients make of
it is the checker's business.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.chaos_services import MongoService, RedisService, Switchboard
from server.process.cluster import MIN_LIFETIME_S

FAULTS = ("kill", "hup", "redis-data", "redis-empty", "mongo")


class FaultFailed(RuntimeError):
    """The fault could not be applied (e.g. the server did not come back)."""


@dataclass
class Target:
    """What the faults act on; `busiest` names the worker holding most subscribers."""

    switchboard: Switchboard
    redis: RedisService
    mongo: MongoService
    busiest: Callable[[], int | None]
    redis_outage_s: float
    mongo_outage_s: float


async def inject(fault: str, target: Target) -> None:
    actions: dict[str, Callable[[Target], Awaitable[None]]] = {
        "kill": kill_worker,
        "hup": rolling_restart,
        "redis-data": lambda t: restart_redis(t, keep_data=True),
        "redis-empty": lambda t: restart_redis(t, keep_data=False),
        "mongo": restart_mongo,
    }
    await actions[fault](target)


async def old_enough(target: Target) -> None:
    """Wait until every worker has run long enough that the parent replaces one that dies
    (a worker dying straight after its start stops everything: server/process/cluster.py)."""
    margin = MIN_LIFETIME_S + 0.5
    while True:
        workers = target.switchboard.workers()
        youngest = min(workers.values(), default=0.0)
        if len(workers) >= target.switchboard.processes and youngest > margin:
            return
        await asyncio.sleep(0.1)


async def kill_worker(target: Target) -> None:
    """SIGKILL the worker most subscribers are on; return once the parent replaced it."""
    sb = target.switchboard
    workers = sb.workers()
    pid = target.busiest()
    if pid not in workers:
        pid = min(workers)
    os.kill(pid, signal.SIGKILL)
    await _until(
        lambda: pid not in (w := sb.workers()) and len(w) >= sb.processes,
        "the killed worker to be replaced",
        30,
        sb,
    )


async def rolling_restart(target: Target) -> None:
    """SIGHUP to the parent; return once every worker from before has been replaced."""
    sb = target.switchboard
    old = set(sb.workers())
    os.kill(sb.pid, signal.SIGHUP)
    await _until(
        lambda: not old & set(w := sb.workers()) and len(w) >= sb.processes,
        "the rolling restart to finish",
        300,
        sb,
    )


async def restart_redis(target: Target, keep_data: bool) -> None:
    """Stop Redis (cleanly, keeping its data; or killed and wiped), wait, start it again."""
    await asyncio.to_thread(target.redis.stop, keep_data)
    await asyncio.sleep(target.redis_outage_s)
    await asyncio.to_thread(target.redis.start)


async def restart_mongo(target: Target) -> None:
    """Stop the MongoDB-compatible server cleanly, wait, start it on the same port and data."""
    await asyncio.to_thread(target.mongo.stop)
    await asyncio.sleep(target.mongo_outage_s)
    await asyncio.to_thread(target.mongo.start)


async def _until(done: Callable[[], bool], what: str, timeout: float, sb: Switchboard) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if not sb.alive():
            raise FaultFailed(f"the Switchboard parent exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise FaultFailed(f"gave up after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
