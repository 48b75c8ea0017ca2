"""`python -m bench.rolling`: a rolling restart of `--processes` workers holding `--clients`
connections, and the rate at which each process accepts them meanwhile.

Target (issue 14): no process sees more than 2x its steady connect rate while another drains.
The steady connect rate is measured, not assumed: the clients first connect at a steady
`--connect-rate`, which the kernel spreads over the processes (SO_REUSEPORT), so each process's
steady rate is that rate divided among them. Then the parent gets SIGHUP: one worker at a time
is replaced and drained, its clients told to reconnect (`reconnect_delay_ms`, plus up to 50 %
jitter here, as the browser client does) spread over `[server] drain_s`. Every connect is
attributed to the process that accepted it by the `node` of its hello; per process, accepts are
counted in `--bin` second bins, and the highest bin during the roll is compared with 2x the
steady rate. Without the drain's spreading (`--drain-s 0`) the same run shows the storm.

Exit status: 0 when the target held and every client was connected again; 2 when not; 1 when
the run could not be carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from bench.procinfo import children
from bench.servers import ServerFailed, started_redis, started_switchboard
from switchboard_load.client import Client, connect, error_cause
from switchboard_load.fdlimit import raise_nofile
from switchboard_load.holder import backoff_s, reconnect, reconnect_delay_s
from switchboard_load.params import parse_addresses

Accept = tuple[float, str]  # when the hello arrived, and the node that sent it


#: Closes after which a client does not come back (unauthorized, forbidden, policy).
FINAL_CLOSES = (4001, 4003, 4008)


@dataclass(frozen=True)
class RollingParams:
    clients: int = 10_000
    processes: int = 2
    connect_rate: float = 1000.0
    drain_s: float = 10.0
    steady_s: float = 5.0
    bin_s: float = 1.0
    max_ratio: float = 2.0
    timeout_s: float = 300.0
    source_addresses: tuple[str, ...] = ()
    json_path: str | None = None
    plot_path: str | None = None


class Fleet:
    """The clients: connected at a steady rate, reconnected when a draining server asks."""

    def __init__(self, url: str, sources: tuple[str, ...]) -> None:
        self.url = url
        self.sources = sources
        self.accepts: list[Accept] = []
        self.open: set[Client] = set()
        self.errors: Counter[str] = Counter()
        self.stopping = False
        self._n = 0
        self._tasks: set[asyncio.Future[Any]] = set()

    async def open_one(self) -> Client:
        self._n += 1
        source = self.sources[self._n % len(self.sources)] if self.sources else None
        client = await connect(self.url, None, source, 20.0)
        hello = await client.hello
        self.accepts.append((client.hello_at, str(hello.get("node"))))
        self.open.add(client)
        client.closed.add_done_callback(lambda _: self._closed(client))
        return client

    def _closed(self, client: Client) -> None:
        self.open.discard(client)
        if self.stopping:
            return
        delay = reconnect_delay_s(client.disconnect_push)
        code = client.closed.result()
        if delay is None:
            self.errors[f"closed:{code}"] += 1
            if client.disconnect_push is not None or code in FINAL_CLOSES:
                return
            # Closed without a word (its worker ended before the close handshake): reconnect
            # with backoff, as the browser client does.
            delay = backoff_s(0)
        else:
            self.errors["drained"] += 1
        again = reconnect(self.open_one, delay, lambda: self.stopping, self.errors)
        task = asyncio.ensure_future(again)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ramp(self, count: int, rate: float) -> None:
        """Connect `count` clients at `rate` per second, at most 256 connecting at once."""
        sem, t0, tasks = asyncio.Semaphore(256), time.monotonic(), []

        async def one() -> None:
            try:
                await self.open_one()
            except Exception as exc:
                self.errors[f"connect:{error_cause(exc)}"] += 1
            finally:
                sem.release()

        for i in range(count):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            await sem.acquire()
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)

    def close(self) -> None:
        self.stopping = True
        for client in list(self.open):
            client.close()


def rates(
    accepts: list[Accept], ramp: tuple[float, float], roll: tuple[float, float], p: RollingParams
) -> dict[str, Any]:
    """Per process: accepts per second in bins during the roll, against the steady rate."""
    ramp_n = sum(1 for t, _ in accepts if ramp[0] <= t <= ramp[1])
    steady = ramp_n / max(1e-9, ramp[1] - ramp[0]) / p.processes
    bins: dict[str, Counter[int]] = defaultdict(Counter)
    for t, node in accepts:
        if roll[0] <= t <= roll[1]:
            bins[node][int((t - roll[0]) / p.bin_s)] += 1
    nodes: dict[str, dict[str, Any]] = {}
    worst = 0.0
    for node, counts in sorted(bins.items()):
        peak = max(counts.values()) / p.bin_s
        worst = max(worst, peak)
        nodes[node] = {
            "accepted_during_roll": sum(counts.values()),
            "peak_per_s": round(peak, 1),
            "ratio_to_steady": round(peak / steady, 3) if steady else None,
            "series_per_s": [counts.get(i, 0) / p.bin_s for i in range(max(counts) + 1)],
        }
    return {
        "steady_per_process_per_s": round(steady, 1),
        "peak_per_s": round(worst, 1),
        "ratio": round(worst / steady, 3) if steady else None,
        "processes": nodes,
    }


async def measure(p: RollingParams, ws_url: str, parent: int) -> dict[str, Any]:
    """Ramp up, hold, SIGHUP; wait until the roll is over and every client is back."""
    fleet = Fleet(ws_url, p.source_addresses)
    t0 = time.monotonic()
    await fleet.ramp(p.clients, p.connect_rate)
    ramp = (t0, time.monotonic())
    await asyncio.sleep(p.steady_s)
    before, old = len(fleet.open), set(children(parent))
    t_hup = time.monotonic()
    os.kill(parent, signal.SIGHUP)
    while time.monotonic() < t_hup + p.timeout_s:
        workers = set(children(parent))
        if not old & workers and len(workers) >= p.processes and len(fleet.open) >= before:
            break
        await asyncio.sleep(0.1)
    roll_s = time.monotonic() - t_hup
    await asyncio.sleep(2.0)
    doc = rates(fleet.accepts, ramp, (t_hup, time.monotonic()), p)
    doc |= {
        "roll_s": round(roll_s, 2),
        "connected_before": before,
        "connected_after": len(fleet.open),
        "errors": dict(sorted(fleet.errors.items())),
        "hup_at_s": round(t_hup - t0, 3),
        "accepts": [(round(t - t0, 4), node) for t, node in fleet.accepts],
    }
    fleet.close()
    await asyncio.sleep(0.5)
    return doc


def missed(doc: dict[str, Any], p: RollingParams) -> list[str]:
    out = []
    if doc["ratio"] is None or doc["ratio"] > p.max_ratio:
        out.append(
            f"a process accepted {doc['peak_per_s']}/s during the roll, "
            f"{doc['ratio']}x its steady {doc['steady_per_process_per_s']}/s (target <= "
            f"{p.max_ratio}x)"
        )
    if doc["connected_after"] < doc["connected_before"]:
        out.append(f"only {doc['connected_after']} of {doc['connected_before']} clients came back")
    if doc["connected_before"] < p.clients:
        out.append(f"only {doc['connected_before']} of {p.clients} clients connected at first")
    return out


def plot(doc: dict[str, Any], path: str, p: RollingParams) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    per_node: dict[str, Counter[int]] = defaultdict(Counter)
    for t, node in doc["accepts"]:
        per_node[node][int(t / p.bin_s)] += 1
    for node, counts in sorted(per_node.items()):
        xs = range(max(counts) + 1)
        ax.step(
            [x * p.bin_s for x in xs],
            [counts.get(x, 0) / p.bin_s for x in xs],
            where="post",
            label=node,
        )
    ax.axvline(doc["hup_at_s"], color="k", linestyle=":", label="SIGHUP")
    limit = p.max_ratio * doc["steady_per_process_per_s"]
    ax.axhline(limit, color="r", linestyle="--", label=f"{p.max_ratio}x steady")
    ax.set_xlabel("s")
    ax.set_ylabel("accepts/s per process")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse(argv: list[str] | None) -> RollingParams:
    ap = argparse.ArgumentParser(prog="python -m bench.rolling", description=__doc__.split("\n")[0])
    d = RollingParams()
    ap.add_argument("--clients", type=int, default=d.clients)
    ap.add_argument("--processes", type=int, default=d.processes)
    ap.add_argument("--connect-rate", type=float, default=d.connect_rate)
    ap.add_argument("--drain-s", type=float, default=d.drain_s, help="the server's drain_s")
    ap.add_argument("--steady", type=float, default=d.steady_s, help="s held before SIGHUP")
    ap.add_argument("--bin", type=float, default=d.bin_s, help="s per accept-rate bin")
    ap.add_argument("--max-ratio", type=float, default=d.max_ratio)
    ap.add_argument("--timeout", type=float, default=d.timeout_s, help="s for the whole roll")
    ap.add_argument("--source-addresses", default="", help="e.g. 127.0.0.2-127.0.0.9")
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--plot", dest="plot_path")
    a = ap.parse_args(argv)
    if a.clients < 1 or a.processes < 2 or a.connect_rate <= 0 or a.bin <= 0:
        ap.error("needs --clients >= 1, --processes >= 2, positive --connect-rate and --bin")
    return RollingParams(
        clients=a.clients,
        processes=a.processes,
        connect_rate=a.connect_rate,
        drain_s=a.drain_s,
        steady_s=a.steady,
        bin_s=a.bin,
        max_ratio=a.max_ratio,
        timeout_s=a.timeout,
        source_addresses=parse_addresses(a.source_addresses),
        json_path=a.json_path,
        plot_path=a.plot_path,
    )


def main(argv: list[str] | None = None) -> int:
    p = parse(argv)
    raise_nofile()
    env = {"SWITCHBOARD_SERVER_DRAIN_S": str(p.drain_s)}
    try:
        with (
            started_redis() as redis_url,
            started_switchboard(p.processes, redis_url, max_connections=19_000, env=env) as srv,
        ):
            import uvloop

            doc = uvloop.run(measure(p, srv.ws_url, srv.proc.pid))
    except ServerFailed as exc:
        print(f"bench.rolling: run failed: {exc}", file=sys.stderr)
        return 1
    doc["params"] = asdict(p)
    problems = missed(doc, p)
    doc["missed"] = problems
    if p.json_path:
        with open(p.json_path, "w") as f:
            json.dump(doc, f, indent=1)
    if p.plot_path:
        plot(doc, p.plot_path, p)
    print(
        f"{doc['connected_before']} clients, roll {doc['roll_s']} s: steady "
        f"{doc['steady_per_process_per_s']}/s per process, peak {doc['peak_per_s']}/s "
        f"({doc['ratio']}x); {doc['connected_after']} connected after; errors {doc['errors']}"
    )
    for m in problems:
        print(f"MISSED: {m}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
