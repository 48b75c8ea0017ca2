"""The load tester's clients behave like the browser client when the server drains or a backing
service is down: a rolling restart under fan-out costs no publication and no subscriber, and a
subscribe refused `unavailable` is retried until it succeeds."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.servers import API_KEY, started_switchboard
from switchboard_load.client import CommandError, connect
from switchboard_load.holder import reconnect_delay_s, subscribe_retrying
from tests.fixtures.server_processes import ServerProcess
from tests.redis_server import RedisProcess


def test_reconnect_delay_is_the_servers_plus_up_to_half_again() -> None:
    push = {"push": "disconnect", "code": 1012, "reconnect": True, "reconnect_delay_ms": 800}
    delays = [reconnect_delay_s(push) for _ in range(200)]
    assert all(d is not None and 0.8 <= d <= 1.2 for d in delays)
    assert max(d for d in delays if d is not None) > 1.0  # jittered, not a constant
    assert reconnect_delay_s({**push, "reconnect": False}) is None
    assert reconnect_delay_s(None) is None
    assert reconnect_delay_s({"reconnect": True}) == 0.0


def wait_for_connections(base_url: str, count: int, timeout: float = 60) -> None:
    request = urllib.request.Request(
        base_url + "/api/stats", headers={"Authorization": f"apikey {API_KEY}"}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=5) as resp:
            if json.loads(resp.read())["total"]["connections"] >= count:
                return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} connections after {timeout} s")


def test_a_rolling_restart_under_fanout_loses_no_publication_and_no_subscriber(
    tmp_path: Path, redis_url: str, mongo_url: str
) -> None:
    env = {
        "SWITCHBOARD_SERVER_DRAIN_S": "1",
        "SWITCHBOARD_REDIS_PREFIX": f"t{secrets.token_hex(4)}",
        "SWITCHBOARD_MONGO_DATABASE": f"test_{secrets.token_hex(6)}",
        "SWITCHBOARD_REDIS_PRESENCE_TTL_S": "1.5",  # /api/stats sees every process at once
    }
    out = tmp_path / "run.json"
    with started_switchboard(2, redis_url, mongo_url=mongo_url, env=env) as srv:
        load = subprocess.Popen(
            [
                *(sys.executable, "-m", "switchboard_load", "fanout", "--url", srv.ws_url),
                *("--api-url", srv.http_url, "--api-key", API_KEY, "--channel-prefix", "bench:"),
                *("--subscribers", "120", "--channels", "3", "--rate", "30"),
                *("--duration", "12", "--drain", "10", "--quiet", "--json", str(out)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for_connections(srv.http_url, 120)  # then publishing starts
        drained_at = time.time()
        os.kill(srv.proc.pid, signal.SIGHUP)
        output, _ = load.communicate(timeout=60)
    doc = json.loads(out.read_text())
    assert load.returncode == 0, output
    assert (doc["lost"], doc["duplicated"], doc["reordered"]) == (0, 0, 0), output
    drained = sum(v for k, v in doc["errors"].items() if k.startswith("hold-drained:"))
    assert drained >= 120, doc["errors"]  # every subscriber was drained at least once ...
    assert not any(k.startswith("hold-closed") for k in doc["errors"]), doc["errors"]
    assert doc["connections"]["still_open"] == 120  # ... and is connected again
    assert doc["connections"]["reconnected"] == drained
    assert doc["connections"]["still_reconnecting"] == 0
    assert doc["connections"]["last_reconnect_at"] > drained_at


@pytest.mark.asyncio
async def test_a_subscribe_refused_unavailable_is_retried_until_redis_is_back(
    server_processes: Callable[..., ServerProcess], own_redis: RedisProcess
) -> None:
    server = server_processes(own_redis.url, f"t{secrets.token_hex(4)}")
    server.wait_ready()
    client = await connect(server.ws_url)
    await asyncio.to_thread(own_redis.stop)
    with pytest.raises(CommandError) as refused:
        await client.send_command("subscribe", channel="news")
    assert refused.value.code == "unavailable"
    retrying = asyncio.create_task(subscribe_retrying(client, "news", None, timeout=20))
    await asyncio.sleep(1.0)
    assert not retrying.done()
    await asyncio.to_thread(own_redis.start)
    result = await asyncio.wait_for(retrying, 20)
    assert result["recovered"] is True and "epoch" in result
    client.close()
