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
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from bench.servers import (
    CLUSTER_ENV,
    ROOT,
    SERVER_CPUS,
    Running,
    ServerFailed,
    started_baseline,
    started_cluster,
    started_node,
    started_redis,
    started_switchboard,
)
from bench.suite_report import render, write
from bench.suite_scenarios import BASELINES, SCENARIOS, Scenario
from bench.suite_tester import Outcome, Sizes


@contextmanager
def target(name: str, sc: Scenario) -> Iterator[Running]:
    with pinned(sc.pinned):
        if name == "baseline":
            with started_baseline() as srv:
                yield srv
        elif name == "node":
            with started_node() as srv:
                yield srv
        elif sc.cluster:
            with (
                started_cluster() as url,
                started_switchboard(
                    sc.processes, url, sc.max_connections, sc.mongo_url, env=CLUSTER_ENV
                ) as srv,
            ):
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
    write(output, render(results, sz, started))
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
