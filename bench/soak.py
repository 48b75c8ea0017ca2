"""`python -m bench.soak` (`make soak`): fan-out with connection churn for `--minutes` (30),
sampling the server every `--sample` s (10) into a JSON document and a PNG.

It starts Redis, the embedded MongoDB-compatible server and `python -m server --processes 2`
(as bench.chaos does), runs `python -m switchboard_load churn` against them (held subscribers over
channels with history and presence, publications through the HTTP API, connections opened and
closed at `--churn-rate`), and meanwhile samples: RSS and open files of every worker (/proc),
connections (GET /api/stats), each worker's event-loop lag and the p99 delivery latency
(bench/soak_probe.py).

Targets (issue 14), after `--warmup` minutes (5, or a third of a shorter run): RSS and open files
grow by less than 5 % (the mean of the last minute against the first), the p99 of every sample
stays within 2x the first minute's; and the load tester's delivery check holds. Exit status: 0
when all held, 2 when one was missed, 1 when the run could not be carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.chaos_services import MongoService, RedisService, Switchboard
from bench.procinfo import children, open_files, rss_bytes
from bench.servers import API_KEY, ServerFailed
from bench.soak_probe import Probes
from bench.soak_report import missed, plot
from switchboard_client import ServerAPI, SwitchboardError


@dataclass(frozen=True)
class SoakParams:
    minutes: float = 30.0
    warmup_minutes: float = 5.0
    sample_s: float = 10.0
    subscribers: int = 1000
    channels: int = 10
    rate: float = 20.0
    churn_rate: float = 20.0
    churn_life: float = 5.0
    probes: int = 50
    processes: int = 2
    json_path: str = "bench/results/soak.json"
    plot_path: str = "bench/results/soak.png"

    @property
    def warmup_s(self) -> float:
        return min(self.warmup_minutes * 60, self.minutes * 60 / 3)


def load_command(p: SoakParams, sb: Switchboard, out: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "switchboard_load", "churn", "--url", sb.ws_url, "--quiet"),
        *("--api-url", sb.http_url, "--api-key", API_KEY, "--channel-prefix", "chaos:"),
        *("--subscribers", str(p.subscribers), "--channels", str(p.channels)),
        *("--rate", str(p.rate), "--churn-rate", str(p.churn_rate)),
        *("--churn-life", str(p.churn_life), "--duration", str(p.minutes * 60)),
        *("--json", str(out)),
    ]


async def sample(sb: Switchboard, api: ServerAPI, probes: Probes, t: float) -> dict[str, Any]:
    workers = children(sb.pid)
    rss = {pid: rss_bytes(pid) for pid in workers}
    fds = {pid: open_files(pid) for pid in workers}
    try:
        connections: int | None = int((await api.stats())["total"]["connections"])
    except (SwitchboardError, KeyError):
        connections = None
    return {
        "t": round(t, 1),
        "rss_bytes": sum(v for v in rss.values() if v),
        "open_files": sum(v for v in fds.values() if v),
        "per_worker": {str(pid): {"rss_bytes": rss[pid], "open_files": fds[pid]} for pid in rss},
        "connections": connections,
        **probes.take(),
    }


async def soak(p: SoakParams, workdir: Path) -> dict[str, Any]:
    redis, mongo = RedisService(workdir), MongoService(workdir)
    sb = Switchboard(workdir, "", "", p.processes)
    probes: Probes | None = None
    try:
        await asyncio.to_thread(redis.start)
        await asyncio.to_thread(mongo.start)
        sb = Switchboard(workdir, redis.url, mongo.url, p.processes)
        await asyncio.to_thread(sb.start, 10.0)
        channels = [f"chaos:{i}" for i in range(p.channels)]
        probes = Probes(sb.ws_url)
        await probes.start(channels, p.probes, p.processes)
        api = ServerAPI(sb.http_url, API_KEY)
        out = workdir / "load.json"
        with open(workdir / "load.log", "wb") as log:
            load = subprocess.Popen(load_command(p, sb, out), stdout=log, stderr=log)
        t0, samples = time.monotonic(), []
        # Sampled while the load runs; its final drain and report are not part of the soak.
        while load.poll() is None and time.monotonic() - t0 + p.sample_s <= p.minutes * 60:
            await asyncio.sleep(p.sample_s - (time.monotonic() - t0) % p.sample_s)
            samples.append(await sample(sb, api, probes, time.monotonic() - t0))
            print(_line(samples[-1]), flush=True)
        await asyncio.to_thread(load.wait)
        loaded = json.loads(out.read_text()) if out.exists() else {}
        return {"samples": samples, "load": _load_summary(loaded, load.returncode)}
    finally:
        if probes is not None:
            await probes.close()
        await asyncio.to_thread(sb.stop)
        await asyncio.to_thread(mongo.stop)
        await asyncio.to_thread(redis.stop)


def _line(s: dict[str, Any]) -> str:
    lag = max(s["loop_lag_ms"].values(), default=None)
    return (
        f"{s['t']:>7.0f} s  rss {s['rss_bytes'] / 2**20:7.1f} MB  files {s['open_files']:>6}  "
        f"conns {s['connections']}  p99 {s['p99_ms']} ms  loop lag {lag} ms"
    )


def _load_summary(doc: dict[str, Any], returncode: int | None) -> dict[str, Any]:
    keys = ("delivered", "published", "lost", "duplicated", "reordered", "latency_ms", "errors")
    return {"returncode": returncode, **{k: doc.get(k) for k in keys}}


def parse(argv: list[str] | None) -> SoakParams:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    d = SoakParams()
    ap.add_argument("--minutes", type=float, default=d.minutes)
    ap.add_argument("--warmup", type=float, default=d.warmup_minutes, help="minutes")
    ap.add_argument("--sample", type=float, default=d.sample_s, help="seconds between samples")
    for name in ("subscribers", "channels", "probes", "processes"):
        ap.add_argument(f"--{name}", type=int, default=getattr(d, name))
    ap.add_argument("--rate", type=float, default=d.rate, help="publications/s in total")
    ap.add_argument("--churn-rate", type=float, default=d.churn_rate, help="connections/s")
    ap.add_argument("--churn-life", type=float, default=d.churn_life, help="seconds each")
    ap.add_argument("--json", dest="json_path", default=d.json_path)
    ap.add_argument("--plot", dest="plot_path", default=d.plot_path)
    a = ap.parse_args(argv)
    if a.minutes <= 0 or a.sample <= 0 or a.channels < 1 or a.probes < 1:
        ap.error("--minutes, --sample, --channels and --probes must be positive")
    return SoakParams(
        minutes=a.minutes,
        warmup_minutes=a.warmup,
        sample_s=a.sample,
        subscribers=a.subscribers,
        channels=a.channels,
        rate=a.rate,
        churn_rate=a.churn_rate,
        churn_life=a.churn_life,
        probes=a.probes,
        processes=a.processes,
        json_path=a.json_path,
        plot_path=a.plot_path,
    )


def main(argv: list[str] | None = None) -> int:
    p = parse(argv)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        doc = asyncio.run(soak(p, workdir))
    except ServerFailed as exc:
        print(f"bench.soak: run failed: {exc} (logs in {workdir})", file=sys.stderr)
        return 1
    doc["params"] = asdict(p)
    doc["missed"] = problems = missed(doc, p.warmup_s)
    for path in (p.json_path, p.plot_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(p.json_path).write_text(json.dumps(doc, indent=1))
    plot(doc, p.plot_path, p.warmup_s)
    print(f"samples: {p.json_path}, plot: {p.plot_path}")
    for m in problems:
        print(f"MISSED: {m}", file=sys.stderr)
    if problems:
        print(f"logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
