"""/metrics: valid OpenMetrics when asked for, every process in one scrape, histograms, process_*,
and who may scrape (API key, bearer token, networks)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tornado.httpclient
from prometheus_client import Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from server.observe import metrics
from server.observe.stats import LATENCY_BUCKETS, Tally
from tests.fixtures.server_processes import ServerProcess
from tests.support import API_KEY, RunningServer, WsClient, make_config, start_server, ws_open

ROOT = Path(__file__).resolve().parent.parent
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TOKEN = "scrape-token-0123456789"


async def scrape(
    base_url: str, accept: str = OPENMETRICS, headers: dict[str, str] | None = None
) -> tornado.httpclient.HTTPResponse:
    hdrs = {"Authorization": f"apikey {API_KEY}", "Accept": accept}
    if headers is not None:
        hdrs = {"Accept": accept, **headers}
    return await tornado.httpclient.AsyncHTTPClient().fetch(
        base_url + "/metrics", headers=hdrs, raise_error=False
    )


def families(text: str) -> dict[str, Metric]:
    """Parse with prometheus-client's OpenMetrics parser, which rejects an invalid page."""
    return {f.name: f for f in parse_om(text)}


def value(family: Metric, sample: str, **labels: str) -> float:
    found = [
        s.value
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (sample, labels, family.samples)
    return found[0]


@pytest_asyncio.fixture
async def app_with_token() -> AsyncIterator[RunningServer]:
    server = await start_server(make_config(metrics={"token": TOKEN}))
    yield server
    await server.stop()


@pytest.mark.asyncio
async def test_openmetrics_page_parses_with_histograms_and_process_metrics(
    app: RunningServer, ws_connect: Callable[..., Awaitable[WsClient]]
) -> None:
    c = await ws_connect()
    await c.ok("subscribe", channel="room")  # the default namespace keeps history
    await c.ok("publish", channel="room", data=1)
    await c.push_of("pub")
    resp = await scrape(app.base_url)
    assert resp.code == 200
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    text = resp.body.decode()
    assert text.endswith("# EOF\n")
    fam = families(text)
    node = app.node.id
    assert fam["switchboard_connections"].type == "gauge"
    assert value(fam["switchboard_connections"], "switchboard_connections", node=node) == 1
    accepted = fam["switchboard_connections_accepted"]
    assert accepted.type == "counter"
    assert value(accepted, "switchboard_connections_accepted_total") >= 1
    assert value(fam["switchboard_publications"], "switchboard_publications_total") == 1
    rss = fam["process_resident_memory_bytes"]
    assert value(rss, "process_resident_memory_bytes", node=node) > 10**6
    assert value(fam["process_cpu_seconds"], "process_cpu_seconds_total", node=node) > 0
    assert value(fam["process_open_fds"], "process_open_fds", node=node) > 0
    lag = fam["switchboard_delivery_lag_seconds"]
    assert lag.type == "histogram" and value(lag, "switchboard_delivery_lag_seconds_count") == 1
    assert value(lag, "switchboard_delivery_lag_seconds_bucket", le="+Inf") == 1
    commands = fam["switchboard_command_duration_seconds"]
    for op in ("subscribe", "publish"):
        count = value(commands, "switchboard_command_duration_seconds_count", command=op)
        assert count == 1
    store = fam["switchboard_store_append_seconds"]
    assert value(store, "switchboard_store_append_seconds_count") == 1


@pytest.mark.asyncio
async def test_prometheus_text_without_an_accept_header(app: RunningServer) -> None:
    resp = await scrape(app.base_url, accept="")
    assert resp.code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in parse_text(resp.body.decode())}
    assert {"switchboard_connections", "switchboard_messages_in", "process_max_fds"} <= names


@pytest.mark.asyncio
async def test_bearer_token_scrapes_and_wrong_credentials_do_not(
    app_with_token: RunningServer,
) -> None:
    url = app_with_token.base_url
    assert (await scrape(url, headers={"Authorization": f"Bearer {TOKEN}"})).code == 200
    assert (await scrape(url, headers={"Authorization": f"apikey {API_KEY}"})).code == 200
    for wrong in (f"Bearer {API_KEY}", "Bearer wrong-token-0123456789", f"apikey {TOKEN}", ""):
        assert (await scrape(url, headers={"Authorization": wrong})).code == 401, wrong


@pytest.mark.asyncio
async def test_open_to_a_network_by_the_peer_address_never_forwarded_for() -> None:
    opened = await start_server(make_config(metrics={"open_to": ["127.0.0.0/8"]}))
    closed = await start_server(make_config(metrics={"open_to": ["10.0.0.0/8"]}))
    try:
        assert (await scrape(opened.base_url, headers={})).code == 200
        forged = {"X-Forwarded-For": "10.1.2.3", "X-Real-Ip": "10.1.2.3"}
        assert (await scrape(closed.base_url, headers=forged)).code == 401
    finally:
        await opened.stop()
        await closed.stop()


def test_metrics_config_is_checked() -> None:
    from server.config import ConfigError

    with pytest.raises(ConfigError, match=r"metrics.open_to: must be a list of networks"):
        make_config(metrics={"open_to": ["localhost"]})
    with pytest.raises(ConfigError, match=r"metrics.token: must be empty or at least 16"):
        make_config(metrics={"token": "short"})


def test_gauges_of_a_dead_process_leave_the_shared_directory(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine, gone = os.getpid(), dead.pid
    for pid in (mine, gone):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    metrics.forget_dead_processes(str(tmp_path))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([f"counter_{gone}.db", f"counter_{mine}.db", f"gauge_livesum_{mine}.db"])


@pytest_asyncio.fixture
async def clients() -> AsyncIterator[Callable[[str], Awaitable[WsClient]]]:
    opened: list[WsClient] = []

    async def connect(url: str) -> WsClient:
        opened.append(await ws_open(url))
        return opened[-1]

    yield connect
    for client in opened:
        await client.close()


@pytest.mark.asyncio
async def test_one_scrape_shows_every_worker_of_processes_2(
    server_processes: Callable[..., ServerProcess],
    redis_url: str,
    redis_prefix: str,
    clients: Callable[[str], Awaitable[WsClient]],
) -> None:
    server = server_processes(redis_url, redis_prefix, processes=2)
    server.wait_ready()
    per_node: dict[str, int] = {}
    # The workers share one listening socket: whichever wakes first accepts, and one opened at
    # a time on a loaded machine can all go to the same one. Opened in bursts, both take some.
    for _ in range(20):
        for client in await asyncio.gather(*(clients(server.ws_url) for _ in range(10))):
            per_node[client.hello["node"]] = per_node.get(client.hello["node"], 0) + 1
        if len(per_node) == 2 and sum(per_node.values()) >= 6:
            break
    assert len(per_node) == 2, "connections never landed on a second worker"
    # Each scrape reaches one worker; every one of them must show both, with their own figures
    # (another worker's are at most SYNC_INTERVAL_S old).
    deadline = time.monotonic() + 10
    seen: dict[str, Any] = {}
    for _ in range(6):
        while True:
            resp = await scrape(server.base_url)
            assert resp.code == 200, resp.body
            fam = families(resp.body.decode())
            conns = {s.labels["node"]: s.value for s in fam["switchboard_connections"].samples}
            if conns == per_node or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert conns == per_node, (conns, per_node)
        rss = {s.labels["node"] for s in fam["process_resident_memory_bytes"].samples}
        assert rss == set(per_node)
        accepted = value(
            fam["switchboard_connections_accepted"], "switchboard_connections_accepted_total"
        )
        seen["accepted"] = accepted
    assert seen["accepted"] >= sum(per_node.values())
    assert server.stop() == 0, server.log()


@pytest.mark.asyncio
async def test_the_grafana_dashboard_asks_only_for_series_the_server_exports(
    app: RunningServer, ws_connect: Callable[..., Awaitable[WsClient]]
) -> None:
    c = await ws_connect()
    await c.ok("subscribe", channel="room")
    await c.ok("publish", channel="room", data=1)
    resp = await scrape(app.base_url, accept="")
    exported = {s.name for f in parse_text(resp.body.decode()) for s in f.samples}
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {m for e in exprs for m in re.findall(r"\b(?:switchboard|process)_\w+", e)}
    assert len(asked) >= 12 and asked <= exported, asked - exported


def test_a_tally_added_to_a_histogram_equals_observing_each_value() -> None:
    values = [0.0, 0.0005, 0.001, 0.0011, 0.0025, 0.03, 0.25, 0.2500001, 9.9, 10.0, 10.5, 1e9]
    observed = Histogram("h", "h", registry=None, buckets=LATENCY_BUCKETS)
    added = Histogram("h", "h", registry=None, buckets=LATENCY_BUCKETS)
    tally = Tally()
    for v in values:
        observed.observe(v)
        tally.observe(v)
    metrics._add(added, *tally.drain())
    assert tally.drain() == ([0] * (len(LATENCY_BUCKETS) + 1), 0.0)  # drained
    metrics._add(added, *tally.drain())  # an empty tally adds nothing
    samples = [
        [(s.name, s.labels, s.value) for s in h.collect()[0].samples if s.name != "h_created"]
        for h in (observed, added)
    ]
    assert samples[0] == samples[1]
    assert ("h_count", {}, len(values)) in samples[1]
