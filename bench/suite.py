"""`python -m bench.suite` (`make bench`): every benchmark scenario against Switchboard and two
baselines, bare Tornado and bare Node.js + ws, in the same run, written up as docs/benchmarks.md.

Why all in one run: figures from a shared two-core machine move by tens of percent from one
hour to the next; a ratio to a baseline measured minutes apart is what stays comparable.

    python -m bench.suite                          # everything (about 25 minutes)
    python -m bench.suite --only fanout-1k --quick # one scenario, small and short
    python -m bench.suite --only cost-1k-50,cost-1k-50-redis   # one comparison

Cost scenarios (`pinned`) run the servers on core 0 and the tester (and Redis) on the others
(`taskset`; BENCH_SERVER_CPUS), so the tester's work is not counted as the server's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import (
    API_KEY,
    ROOT,
    SERVER_CPUS,
    TOKEN_SECRET,
    Running,
    ServerFailed,
    started_baseline,
    started_node,
    started_redis,
    started_switchboard,
)
from switchboard_load.cli import run as run_load
from switchboard_load.coordinator import RunFailed
from switchboard_load.params import ParamError, parse_params
from switchboard_load.report import failures

P99_LIMIT_MS = 250.0
SOURCES = "127.0.0.2-127.0.0.9"
#: The baselines, by target name, as the write-up names them.
BASELINES = {"baseline": "bare Tornado", "node": "Node ws"}


@dataclass
class Outcome:
    """One scenario on one target: headline figures, raw documents, and what went wrong."""

    figures: dict[str, float | int | None] = field(default_factory=dict)
    docs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    body: Callable[[Running, Outcome, Sizes, Path, str], None]
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
    #: servers on core 0, the tester and Redis on the others (machines with 2 cores or more)
    pinned: bool = False
    #: Switchboard's [mongo] url: memory (the default), or "" for the embedded server
    mongo_url: str = "memory:"


@dataclass(frozen=True)
class Sizes:
    quick: bool

    def n(self, full: int) -> int:
        return max(10, full // 10) if self.quick else full

    def secs(self, full: float) -> float:
        return min(2.0, full) if self.quick else full


def load(argv: list[str], out: Outcome, outdir: Path, tag: str) -> dict[str, Any] | None:
    """One load-tester run; its document is kept, its failures become notes."""
    argv = argv + ["--json", str(outdir / f"{tag}.json"), "--plot", str(outdir / f"{tag}.png")]
    try:
        doc = run_load(parse_params(argv))
    except (ParamError, RunFailed) as exc:
        out.notes.append(f"{tag}: {exc}")
        return None
    doc["failures"] = failures(doc)
    out.docs.append(doc)
    out.notes += [f"{tag}: {msg}" for msg in doc["failures"]]
    out.notes += [f"{tag}: {w}" for w in doc["client"]["warnings"][:2]]
    return doc


def server_cost(out: Outcome, doc: dict[str, Any], unit: str = "delivery") -> None:
    out.figures[f"server µs CPU per {unit}"] = doc.get("server", {}).get("cpu_us_per_delivery")


def client_cost(out: Outcome, doc: dict[str, Any]) -> None:
    out.figures["tester cores per 100k deliveries/s"] = doc["client"]["cores_per_100k_deliveries_s"]
    out.figures["tester µs CPU per frame"] = doc["client"]["cpu_us_per_frame"]


# -- scenario bodies ----------------------------------------------------------------------------


def hold(count: int, rate: int = 2000) -> Callable[[Running, Outcome, Sizes, Path, str], None]:
    """Held connections, each authenticated by token and subscribed to one of 100 channels,
    opened at `rate` per second (asked: the figure is what the server took)."""

    def body(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
        n = sz.n(count)
        workers = max(1, math.ceil(n / 18_000), math.ceil(rate / 2500))
        doc = load(
            [
                "hold",
                "--url",
                srv.ws_url,
                "--connections",
                str(n),
                "--connect-rate",
                str(rate),
                "--workers",
                str(workers),
                "--duration",
                str(sz.secs(10)),
                "--api-key",
                API_KEY,
                "--subscribe",
                "--channels",
                "100",
                "--channel-prefix",
                _prefix(srv),
                "--token-secret",
                TOKEN_SECRET,
                "--source-addresses",
                SOURCES,
                "--connect-timeout",
                "30",
            ],
            out,
            outdir,
            tag,
        )
        if doc:
            c = doc["connections"]
            out.figures |= {
                "connections held": c["still_open"],
                "requested": n,
                "connects/s": c["connect_rate_per_s"],
                "failed connects": sum(
                    v for k, v in doc["errors"].items() if k.startswith("connect:")
                ),
                "server bytes RSS per connection": doc["server"].get("bytes_per_connection"),
                "server µs CPU per connection": doc["server"].get("cpu_us_per_connection"),
            }

    return body


def fanout_ramp(subscribers: int, rates: list[float]) -> Callable[..., None]:
    """Rising publication rates until p99 passes 250 ms (or delivery fails)."""

    def body(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
        n, best, steps = sz.n(subscribers), None, []
        for rate in rates[:3] if sz.quick else rates:
            pubs = max(1, min(8, math.ceil(rate / 500)))
            # one worker takes ~60,000 deliveries/s before it saturates (bench/README.md)
            workers = min(4, max(1, math.ceil(n / 18_000), math.ceil(n * rate / 60_000)))
            argv = [
                "fanout",
                "--url",
                srv.ws_url,
                "--subscribers",
                str(n),
                "--publishers",
                str(pubs),
                "--rate",
                str(rate),
                "--channels",
                "1",
                "--workers",
                str(workers),
                "--duration",
                str(sz.secs(6)),
                "--channel-prefix",
                _prefix(srv),
                "--source-addresses",
                SOURCES,
                "--connect-rate",
                "3000",
                "--api-key",
                API_KEY,
                "--quiet",
            ]
            # a shared machine has stalls that are not the server's: a step over the limit gets
            # one more try before it ends the ramp (both tries are in the notes)
            for attempt in ("", "-again"):
                doc = load(argv, out, outdir, f"{tag}-r{rate:g}{attempt}")
                if doc is None:
                    break
                p99 = doc["latency_ms"]["p99"]
                steps.append(
                    f"{rate:g}/s → {doc['deliveries_per_s']:.0f} deliveries/s, p99 {p99} ms"
                )
                if doc["failures"] or p99 <= P99_LIMIT_MS:
                    break
            if doc is None or doc["failures"] or doc["latency_ms"]["p99"] > P99_LIMIT_MS:
                break
            best = doc
        out.notes.append(f"{tag} steps: " + "; ".join(steps))
        if best:
            out.figures |= {
                "subscribers": n,
                "max publications/s with p99 ≤ 250 ms": best["params"]["rate"],
                "deliveries/s at that rate": best["deliveries_per_s"],
                "p50 ms": best["latency_ms"]["p50"],
                "p99 ms": best["latency_ms"]["p99"],
                "p99.9 ms": best["latency_ms"]["p999"],
            }
            server_cost(out, best)
            client_cost(out, best)
        else:
            out.figures["max publications/s with p99 ≤ 250 ms"] = 0

    return body


def echo(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
    doc = load(
        [
            "echo",
            "--url",
            srv.ws_url,
            "--connections",
            "100",
            "--duration",
            str(sz.secs(10)),
            "--api-key",
            API_KEY,
            "--quiet",
        ],
        out,
        outdir,
        tag,
    )
    if doc:
        out.figures |= {
            "round trips/s": doc["deliveries_per_s"],
            "p50 ms": doc["latency_ms"]["p50"],
            "p99 ms": doc["latency_ms"]["p99"],
        }
        server_cost(out, doc, "round trip")
        client_cost(out, doc)


def fanout_cost(subscribers: int, rate: float, encoding: str = "json") -> Callable[..., None]:
    """Server CPU per delivery at one fixed load: the figure issues 8 and 19 compare."""

    def body(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
        n = sz.n(subscribers)
        workers = min(4, max(1, math.ceil(n / 18_000), math.ceil(n * rate / 60_000)))
        doc = load(
            [
                "fanout",
                "--encoding",
                encoding,
                "--url",
                srv.ws_url,
                "--subscribers",
                str(n),
                "--rate",
                str(rate),
                "--workers",
                str(workers),
                "--channels",
                "1",
                "--duration",
                str(sz.secs(10)),
                "--channel-prefix",
                _prefix(srv),
                "--source-addresses",
                SOURCES,
                "--api-key",
                API_KEY,
                "--quiet",
            ],
            out,
            outdir,
            tag,
        )
        if doc:
            out.figures |= {
                "deliveries/s": doc["deliveries_per_s"],
                "p99 ms": doc["latency_ms"]["p99"],
                "lost": doc["lost"] + doc["duplicated"] + doc["reordered"],
                "payload bytes per delivery": doc["client"]["payload_bytes_per_delivery"],
            }
            server_cost(out, doc)
            client_cost(out, doc)

    return body


def encodings_cost(subscribers: int, rate: float) -> Callable[..., None]:
    """`fanout_cost` in JSON, then in MessagePack, on the same server: CPU and bytes per
    delivery of each encoding, side by side (issue 17)."""

    def body(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
        for encoding in ("json", "msgpack"):
            part = Outcome()
            fanout_cost(subscribers, rate, encoding)(srv, part, sz, outdir, f"{tag}-{encoding}")
            out.docs += part.docs
            out.notes += part.notes
            out.figures |= {f"{k} ({encoding})": v for k, v in part.figures.items()}

    return body


def fast_publisher(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
    """One WebSocket connection publishing as fast as the server acknowledges (at most 1,000
    unanswered), to one channel with one subscriber."""
    seconds = sz.secs(8)
    doc = load(
        [
            "fanout",
            "--url",
            srv.ws_url,
            "--subscribers",
            "1",
            "--publishers",
            "1",
            "--rate",
            "40000",
            "--channels",
            "1",
            "--duration",
            str(seconds),
            "--channel-prefix",
            _prefix(srv),
            "--api-key",
            API_KEY,
            "--quiet",
        ],
        out,
        outdir,
        tag,
    )
    if doc:
        errors = sum(v for k, v in doc["errors"].items() if k.startswith("publish:error"))
        out.figures |= {
            "acknowledged publications/s": round((doc["published"] - errors) / seconds),
            "deliveries/s": doc["deliveries_per_s"],
            "p99 ms (publish to delivery)": doc["latency_ms"]["p99"],
            "lost": doc["lost"] + doc["duplicated"] + doc["reordered"],
        }
        server_cost(out, doc, "publication")


def churn(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
    doc = load(
        [
            "churn",
            "--url",
            srv.ws_url,
            "--subscribers",
            str(sz.n(1000)),
            "--channels",
            "10",
            "--rate",
            "50",
            "--publishers",
            "1",
            "--churn-rate",
            str(sz.n(500)),
            "--churn-life",
            "2",
            "--duration",
            str(sz.secs(10)),
            "--channel-prefix",
            _prefix(srv),
            "--source-addresses",
            SOURCES,
            "--quiet",
        ],
        out,
        outdir,
        tag,
    )
    if doc:
        out.figures |= {
            "connections opened by churn": doc["connections"]["churn_opened"],
            "churn failures": sum(v for k, v in doc["errors"].items() if k.startswith("churn")),
            "deliveries/s": doc["deliveries_per_s"],
            "p99 ms": doc["latency_ms"]["p99"],
            "lost": doc["lost"],
        }
        client_cost(out, doc)


def _prefix(srv: Running) -> str:
    return "bench:" if srv.name == "switchboard" else "bench."


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
        fast_publisher,
        redis=True,
        baseline=False,
        no_baseline="No baseline: the baselines acknowledge a publish without Redis.",
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


# -- running ------------------------------------------------------------------------------------


@contextmanager
def target(name: str, sc: Scenario) -> Iterator[Running]:
    with pinned(sc.pinned):
        if name == "baseline":
            with started_baseline() as srv:
                yield srv
        elif name == "node":
            with started_node() as srv:
                yield srv
        elif sc.processes > 1 or sc.redis:
            with (
                started_redis() as url,
                started_switchboard(sc.processes, url, sc.max_connections, sc.mongo_url) as srv,
            ):
                yield srv
        else:
            with started_switchboard(
                max_connections=sc.max_connections, mongo_url=sc.mongo_url
            ) as srv:
                yield srv


@contextmanager
def pinned(on: bool) -> Iterator[None]:
    """Servers on core 0; this process (so the tester's workers, and Redis) on the others."""
    cores = sorted(os.sched_getaffinity(0))
    if not on or len(cores) < 2:
        yield
        return
    os.environ[SERVER_CPUS] = str(cores[0])
    os.sched_setaffinity(0, cores[1:])
    try:
        yield
    finally:
        os.environ.pop(SERVER_CPUS, None)
        os.sched_setaffinity(0, cores)


def run_scenario(sc: Scenario, name: str, sz: Sizes, outdir: Path) -> Outcome:
    out = Outcome()
    print(f"== {sc.name} on {name}", flush=True)
    cm: AbstractContextManager[Running] = target(name, sc)
    try:
        with cm as srv:
            sc.body(srv, out, sz, outdir, f"{sc.name}-{name}")
    except ServerFailed as exc:
        out.notes.append(f"{name} did not start: {exc}")
        print(f"   {name} failed to start: {str(exc).splitlines()[0]}", file=sys.stderr)
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}"
    )


def commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or "?"
        )
    except OSError:
        return "?"


def ratio(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}×"
    return "–"


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render(results: dict[str, dict[str, Outcome]], sz: Sizes, started: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `python -m bench.suite{' --quick' if sz.quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(started))} "
        f"(commit {commit()}, {time.time() - started:.0f} s).",
        "",
        f"Machine: {machine()}. Client (the load tester) and server share these cores, except "
        "in the cost scenarios, which run the servers on core 0 and the tester on the others.",
        "",
        "Baselines, both measured in this run: bare Tornado (bench/baseline_tornado.py: one "
        "process, `write_message` per subscriber, no history or auth) and bare Node.js + ws "
        "(bench/node/server.js: one process, `ws.send` per subscriber, HS256 tokens checked, no "
        "history). ÷ columns are Switchboard's figure divided by the baseline's. Switchboard runs "
        "`python -m server --dev` with an in-memory store, command rate limits lifted, and "
        "namespace `bench` (history 100, no presence or join/leave).",
        "",
    ]
    for sc in SCENARIOS:
        if sc.name not in results:
            continue
        r = results[sc.name]
        sb = r.get("switchboard", Outcome())
        bases = [(BASELINES[n], r[n]) for n in BASELINES if n in r]
        lines += [f"## {sc.title} (`{sc.name}`)", ""]
        keys = list(dict.fromkeys([*sb.figures, *(k for _, o in bases for k in o.figures)]))
        if bases:
            head = ["figure", "Switchboard", *(t for t, _ in bases), *(f"÷ {t}" for t, _ in bases)]
            lines += ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
            for k in keys:
                a = sb.figures.get(k)
                cells = [k, fmt(a), *(fmt(o.figures.get(k)) for _, o in bases)]
                cells += [ratio(a, o.figures.get(k)) for _, o in bases]
                lines.append("| " + " | ".join(cells) + " |")
        else:
            lines += ["| figure | Switchboard |", "| --- | ---: |"]
            lines += [f"| {k} | {fmt(sb.figures.get(k))} |" for k in keys]
            lines.append("")
            lines.append(sc.no_baseline)
        notes = sb.notes + [n for _, o in bases for n in o.notes]
        if notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    names = [s.name for s in SCENARIOS]
    ap = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(names), help=f"comma list of: {', '.join(names)}")
    ap.add_argument("--quick", action="store_true", help="a tenth of the sizes, 2 s per run")
    ap.add_argument(
        "--targets",
        default="switchboard,baseline,node",
        help="comma list of: switchboard, baseline (bare Tornado), node (Node.js + ws)",
    )
    ap.add_argument(
        "--output",
        help="markdown file (default docs/benchmarks.md for a full run, "
        "bench/results/benchmarks.md otherwise)",
    )
    args = ap.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(only) - set(names)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    full = not args.quick and set(only) == set(names)
    output = (
        Path(args.output)
        if args.output
        else (
            ROOT / "docs" / "benchmarks.md"
            if full
            else ROOT / "bench" / "results" / "benchmarks.md"
        )
    )
    outdir = ROOT / "bench" / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    sz, started = Sizes(args.quick), time.time()
    results: dict[str, dict[str, Outcome]] = {}
    for sc in SCENARIOS:
        if sc.name not in only:
            continue
        results[sc.name] = {}
        for name in args.targets.split(","):
            if name in BASELINES and not sc.baseline:
                continue
            results[sc.name][name] = run_scenario(sc, name, sz, outdir)
            print(
                f"   {json.dumps(results[sc.name][name].figures, ensure_ascii=False)}", flush=True
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(results, sz, started))
    print(f"wrote {output} (raw documents and plots in {outdir})")
    broken = [
        n
        for r in results.values()
        for o in r.values()
        for n in o.notes
        if "FAILED" in n or "did not start" in n
    ]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
