"""The suite's write-up (docs/benchmarks.md): each scenario's figures beside the baselines',
with Switchboard's ratio to each, and the machine and commit they were measured on.

A run rewrites only the part above `NOTES_MARK`: the analyses written by hand below it (rounds
of work, profiles, what was tried) outlive every run of the suite.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.servers import ROOT
from bench.suite_scenarios import BASELINES, SCENARIOS
from bench.suite_tester import Outcome, Sizes

#: The line that ends the generated part of the write-up; everything after it is kept.
NOTES_MARK = "<!-- Written by hand below this line: bench.suite keeps it. -->"


def write(output: Path, generated: str) -> None:
    """Write the generated part over `output`'s, keeping its hand-written notes."""
    kept = ""
    if output.exists():
        old = output.read_text()
        at = old.find(NOTES_MARK)
        if at >= 0:
            kept = old[at:]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(f"{generated.rstrip()}\n\n{kept}" if kept else generated)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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
