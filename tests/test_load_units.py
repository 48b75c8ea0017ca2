"""Unit tests of the load tester's own logic: statistics, the delivery checker, parameters."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import threading
import time

import pytest

from switchboard_load.checker import DeliveryTotals, OffsetChecker, offsets_in, runs_of
from switchboard_load.client import Client
from switchboard_load.coordinator import Collected, Coordinator, make_plans
from switchboard_load.params import ParamError, parse_addresses, parse_params
from switchboard_load.progress import Progress
from switchboard_load.report import build, failures
from switchboard_load.serverstats import cpu_seconds, memory, stats_url
from switchboard_load.stats import Histogram, percentile
from switchboard_load.tokens import UrlMaker, with_token
from switchboard_load.worker_state import WorkerState

URL = "ws://127.0.0.1:9/ws"


# -- statistics -------------------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    random.Random(1).shuffle(values)
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile(values, 0) == 1
    assert percentile([7.5], 99) == 7.5


def test_percentile_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_histogram_matches_exact_percentiles_within_one_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(7, 1.5) for _ in range(20_000)]  # µs, a long tail
    h = Histogram()
    h.add_many(values[:5000])
    h2 = Histogram()
    h2.add_many(values[5000:])
    h.merge(h2)
    assert h.total == len(values)
    for q in (50, 90, 99, 99.9):
        exact = percentile(values, q)
        assert abs(h.percentile_us(q) - exact) / exact < 0.011, q
    assert h.max_us == max(values)
    assert h.summary_ms()["max"] == round(max(values) / 1000, 3)


def test_histogram_round_trips_through_its_sparse_form() -> None:
    h = Histogram()
    h.add_many([0, 5, 1000, 1000, 2e6, -3])  # a negative (clock skew) counts as zero
    back = Histogram.from_sparse(h.to_sparse())
    assert back.total == 6 and back.max_us == 2e6
    assert back.summary_ms() == h.summary_ms()
    assert Histogram().summary_ms() == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0}


# -- delivery checker -------------------------------------------------------------------------


def feed(start: int, offsets: list[int]) -> OffsetChecker:
    chk = OffsetChecker(start)
    for off in offsets:
        chk.see(off)
    return chk


def test_checker_in_order_is_clean() -> None:
    chk = feed(10, [11, 12, 13])
    assert chk.caught_up(13) and chk.lost(13) == 0
    assert (chk.duplicated, chk.reordered) == (0, 0)


def test_checker_counts_gap_as_lost() -> None:
    chk = feed(0, [1, 2, 4, 5])
    assert chk.lost(5) == 1 and chk.missing == {3}
    assert not chk.caught_up(5)


def test_checker_counts_missing_tail_as_lost_only_with_final() -> None:
    chk = feed(0, [1, 2])
    assert chk.lost(5) == 3
    assert chk.lost(None) == 0


def test_checker_late_arrival_is_reordered_not_lost() -> None:
    chk = feed(0, [1, 3, 2, 4])
    assert chk.lost(4) == 0 and chk.reordered == 1 and chk.duplicated == 0


def test_checker_duplicates() -> None:
    chk = feed(0, [1, 2, 2, 3, 1])
    assert chk.duplicated == 2 and chk.lost(3) == 0 and chk.reordered == 0


def test_checker_ignores_publications_from_before_the_subscription() -> None:
    chk = feed(5, [4, 5, 6])
    assert chk.lost(6) == 0 and chk.duplicated == 0


def test_only_acknowledged_offsets_are_owed() -> None:
    """Offset 3 was never acknowledged (its publication was refused, so it may be void): a
    subscriber that recovered across it lost nothing; a missing acknowledged one is lost."""
    chk = feed(0, [1, 2, 4, 5])
    assert chk.lost(5, frozenset({1, 2, 4, 5})) == 0 and chk.caught_up(5, frozenset({1, 2, 4, 5}))
    assert chk.lost(5, frozenset({1, 2, 3, 4, 5})) == 1
    assert not chk.caught_up(5, frozenset({3}))
    behind = feed(0, [1])
    assert behind.lost(4, frozenset({1, 2, 4})) == 2  # the tail counts acknowledged ones only


def test_totals_sum_over_subscribers() -> None:
    t = DeliveryTotals()
    t.add("a", feed(0, [1, 2, 3]), 3)
    t.add("a", feed(0, [1, 3]), 3)
    t.add("b", feed(0, [1, 1]), 2)
    assert (t.lost, t.duplicated, t.reordered, t.subscriptions) == (2, 1, 0, 3)
    assert t.examples == [("a", 2), ("b", 2)]
    assert not t.ok


# -- parameters -------------------------------------------------------------------------------


def test_fanout_parameters() -> None:
    p = parse_params(
        [
            "fanout",
            "--url",
            URL,
            "--subscribers",
            "40000",
            "--publishers",
            "4",
            "--rate",
            "200",
            "--channels",
            "10",
            "--source-addresses",
            "127.0.0.2-127.0.0.9",
        ]
    )
    assert (p.subscribers, p.publishers, p.rate, p.channels) == (40000, 4, 200.0, 10)
    assert p.workers == 3  # 40,004 sockets need three workers under the fd limit
    assert p.source_addresses == tuple(f"127.0.0.{i}" for i in range(2, 10))
    assert p.churn_rate == 0.0  # only churn churns
    plans = make_plans(p)
    assert sum(pl.holder_count for pl in plans) == 40000
    assert [pl.holder_start for pl in plans] == [0, 13334, 26667]
    assert sum(pl.publishers for pl in plans) == 4
    assert sum(pl.pub_rate for pl in plans) == pytest.approx(200)


def test_addresses_must_be_loopback() -> None:
    assert parse_addresses("127.0.0.2,127.0.0.4-127.0.0.5") == (
        "127.0.0.2",
        "127.0.0.4",
        "127.0.0.5",
    )
    with pytest.raises(ParamError, match="not a loopback"):
        parse_addresses("10.0.0.1")
    with pytest.raises(ParamError, match="backwards"):
        parse_addresses("127.0.0.9-127.0.0.2")


def test_remote_targets_refused_without_flag() -> None:
    with pytest.raises(ParamError, match="not loopback"):
        parse_params(["echo", "--url", "ws://192.0.2.1:80/ws"])
    with pytest.raises(ParamError, match="not loopback"):
        parse_params(["fanout", "--url", URL, "--api-url", "http://192.0.2.1"])
    assert parse_params(["echo", "--url", "ws://192.0.2.1/ws", "--allow-remote"]).url


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fanout", "--url", "http://127.0.0.1/ws"], "ws/wss URL"),
        (["fanout", "--url", URL, "--rate", "0"], "--rate"),
        (["fanout", "--url", URL, "--publishers", "0"], "--publishers"),
        (["hold", "--url", URL, "--duration", "0"], "--duration"),
        (["hold", "--url", URL, "--connections", "40000", "--workers", "1"], "fd limit"),
        (["echo", "--url", URL, "--token", "a", "--token-secret", "b"], "not both"),
        (["echo", "--url", URL, "--ping-rate", "-1"], "--ping-rate"),
    ],
)
def test_bad_parameters_are_refused_with_a_reason(argv: list[str], message: str) -> None:
    with pytest.raises(ParamError, match=message):
        parse_params(argv)


def test_secrets_stay_out_of_the_result_document() -> None:
    p = parse_params(["echo", "--url", URL, "--token-secret", "s3cret"])
    assert p.document()["token_secret"] == "***"
    assert "s3cret" not in repr(p.document())


def test_minted_tokens_carry_sub_and_exp() -> None:
    import jwt

    url = UrlMaker("ws://127.0.0.1:9/ws?v=1", None, "k" * 32, 60)("bench-7")
    assert url.startswith("ws://127.0.0.1:9/ws?v=1&token=")
    claims = jwt.decode(url.split("token=")[1], "k" * 32, algorithms=["HS256"])
    assert claims["sub"] == "bench-7" and "exp" in claims
    assert with_token(URL, None) == URL


# -- server stats -----------------------------------------------------------------------------


def test_memory_from_per_process_or_flat_stats() -> None:
    assert memory(
        {
            "processes": [{"rss_bytes": 10, "connections": 1}, {"rss_bytes": 20, "connections": 2}],
            "rss_bytes": 999,
        }
    ) == (30, 3)
    assert memory({"rss_bytes": 5, "connections": 7}) == (5, 7)
    assert memory({"total": {"rss_bytes": 5, "connections": 7}}) == (5, 7)
    assert memory({"processes": {"a": {"rss_bytes": 1, "connections": 1}}}) == (1, 1)
    assert memory({}) == (None, None)
    assert stats_url("ws://127.0.0.1:81/ws?x=1", None) == "http://127.0.0.1:81/api/stats"
    assert stats_url(URL, "http://127.0.0.1:5/") == "http://127.0.0.1:5/api/stats"


# -- server start-up and the suite's write-up -------------------------------------------------


def test_a_server_that_dies_at_start_up_fails_with_its_log() -> None:
    import sys

    from bench.servers import ServerFailed, free_port, started

    argv = [sys.executable, "-c", "import sys; print('config error: no such key'); sys.exit(3)"]
    with pytest.raises(ServerFailed, match=r"(?s)exited with code 3.*config error: no such key"):
        with started("broken", argv, free_port(), timeout=10):
            pass


def test_suite_writes_ratios_to_the_baseline() -> None:
    from bench.suite_report import render
    from bench.suite_tester import Outcome, Sizes

    results = {
        "echo-100": {
            "switchboard": Outcome({"round trips/s": 3000.0}, notes=["a note"]),
            "baseline": Outcome({"round trips/s": 2000.0}),
        },
        "hold-40k-redis": {"switchboard": Outcome({"connections held": 40000})},
    }
    md = render(results, Sizes(quick=True), 0.0)
    assert "| round trips/s | 3,000 | 2,000 | 1.50× |" in md
    assert "| connections held | 40,000 |" in md and "No baseline" in md
    assert "- a note" in md and "Machine:" in md


def test_server_cpu_summed_over_processes_or_unknown() -> None:
    two = {"processes": [{"cpu_s": 1.5}, {"cpu_s": 2.25}], "total": {}}
    assert cpu_seconds(two) == 3.75
    assert cpu_seconds({"processes": [{"cpu_s": 1.0}, {}]}) is None  # one process did not tell
    assert cpu_seconds({"rss_bytes": 5}) is None


# -- failures ---------------------------------------------------------------------------------


def _doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "scenario": "fanout",
        "lost": 0,
        "duplicated": 0,
        "reordered": 0,
        "lost_examples": [],
        "subscriptions_checked": 10,
        "errors": {},
        "published": 100,
        "delivered": 1000,
        "channel_offsets": {"bench.0": 100},
        "connections": {"requested": 11, "opened": 11},
    }
    doc.update(changes)
    return doc


def test_a_clean_run_has_no_failures() -> None:
    assert failures(_doc()) == []
    assert failures(_doc(errors={"publish:backpressure_skipped": 3})) == []


def test_refused_publications_fail_naming_the_cause() -> None:
    doc = _doc(
        errors={"publish:error:forbidden": 100},
        delivered=0,
        channel_offsets={},
    )
    msgs = failures(doc)
    assert msgs[0] == "PUBLICATIONS REFUSED: 100 of 100 sent failed (error:forbidden x100)"
    assert "NOTHING DELIVERED: not a single publication delivered" in msgs
    assert "NO PUBLICATION ACKNOWLEDGED: the server never confirmed one" in msgs


def test_some_refusals_fail_too() -> None:
    doc = _doc(errors={"publish:http:503": 2, "publish:timeout": 1})
    assert failures(doc) == ["PUBLICATIONS REFUSED: 3 of 100 sent failed (http:503 x2, timeout x1)"]


def test_an_echo_run_without_round_trips_fails() -> None:
    doc = _doc(scenario="echo", published=0, delivered=0, channel_offsets={})
    assert failures(doc) == ["NOTHING DELIVERED: not a single round trip completed"]


def _worker_result(errors: dict[str, int], reconnected: int) -> dict[str, object]:
    return {
        "delivered": 10,
        "frames": 10,
        "held_frames": 10,
        "held_payload_bytes": 100,
        "hist": Histogram().to_sparse(),
        "cpu_s": 1.0,
        "wall_s": 2.0,
        "errors": errors,
        "published": 5,
        "delivery": {
            "lost": 0,
            "duplicated": 0,
            "reordered": 0,
            "subscriptions": 3,
            "examples": [],
        },
        "churn_opened": 0,
        "max_lag_ms": 1.0,
        "still_open": 3,
        "reconnected": reconnected,
        "last_reconnect_at": 1000.0 + reconnected,
        "still_reconnecting": 0,
    }


def test_errors_and_reconnects_are_summed_over_workers() -> None:
    """Each worker's result counts its own connect errors again: take each worker's latest."""
    p = parse_params(["fanout", "--url", URL, "--subscribers", "6", "--workers", "2"])
    c = Collected()
    c.ready = {
        0: {"connected": 3, "connect_s": 1.0, "errors": {"connect:timeout": 1}},
        1: {"connected": 3, "connect_s": 1.0, "errors": {"connect:timeout": 2}},
    }
    c.results = {
        0: _worker_result({"connect:timeout": 1, "hold-drained:1012": 3}, 3),
        1: _worker_result({"connect:timeout": 2, "hold-drained:1012": 2}, 2),
    }
    doc = build(p, c)
    assert doc["errors"] == {"connect:timeout": 3, "hold-drained:1012": 5}
    assert doc["connections"]["reconnected"] == 5
    assert doc["connections"]["last_reconnect_at"] == 1003.0


def test_a_worker_done_and_gone_does_not_fail_the_others_still_draining() -> None:
    """The first worker to send its result exits; its pipe's end-of-file while another worker
    still drains its stragglers is no failure (a 30,000-connection run failed on it)."""
    p = parse_params(["fanout", "--url", URL, "--subscribers", "6", "--workers", "2"])
    coordinator = Coordinator(p, Progress(quiet=True))
    ends = {i: mp.Pipe() for i in (0, 1)}
    coordinator.pipes = {i: parent for i, (parent, _) in ends.items()}
    ends[0][1].send(("result", 0, {"n": 0}))
    ends[0][1].close()  # worker 0 is done and gone

    def late() -> None:
        time.sleep(0.3)
        ends[1][1].send(("result", 1, {"n": 1}))

    threading.Thread(target=late).start()
    into: dict[int, object] = {}
    coordinator.gather("result", 5.0, into)
    assert into == {0: {"n": 0}, 1: {"n": 1}}


def test_acknowledged_offsets_travel_as_runs() -> None:
    offsets = [5, 3, 4, 9, 10, 12, 4]
    runs = runs_of(offsets)
    assert runs == [(3, 5), (9, 10), (12, 12)]
    assert offsets_in(runs) == frozenset(offsets)
    assert runs_of(list(range(1, 200_001))) == [(1, 200_000)]


def test_a_message_larger_than_the_pipe_buffer_goes_whole() -> None:
    """The worker's event loop leaves its pipe non-blocking; 200,000 acknowledged offsets once
    failed the send half-way (BlockingIOError) and with it the run."""
    plan = make_plans(parse_params(["fanout", "--url", URL, "--subscribers", "1"]))[0]
    ours, theirs = mp.Pipe()
    state = WorkerState(plan, ours)
    os.set_blocking(ours.fileno(), False)
    big = list(range(200_000))
    got: list[object] = []

    def read_later() -> None:
        time.sleep(0.2)
        got.append(theirs.recv())

    reader = threading.Thread(target=read_later)
    reader.start()
    state.send("published", 0, big)
    reader.join()
    assert got == [("published", 0, big)]
    assert not os.get_blocking(ours.fileno())  # left as the loop had it


@pytest.mark.asyncio
async def test_the_client_keeps_the_reasons_of_unsubscribed_pushes() -> None:
    """A subscription the server ended is reported (as `unsubscribed:<reason>` errors), not
    left to look like lost publications."""
    client = Client()
    client._other({"push": "join", "channel": "c"})
    client._other({"push": "unsubscribed", "channel": "c", "reason": "insufficient_state"})
    assert client.unsubscribed == ["insufficient_state"]
