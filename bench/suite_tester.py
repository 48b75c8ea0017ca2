"""Running the load tester for one scenario on one target: how big (Sizes), and what the runs
yield (Outcome): headline figures, raw documents, and notes of what went wrong."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import Running
from switchboard_load.cli import run as run_load
from switchboard_load.coordinator import RunFailed
from switchboard_load.params import ParamError, parse_params
from switchboard_load.report import failures

SOURCES = "127.0.0.2-127.0.0.9"


@dataclass
class Outcome:
    """One scenario on one target: headline figures, raw documents, and what went wrong."""

    figures: dict[str, float | int | None] = field(default_factory=dict)
    docs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sizes:
    quick: bool

    def n(self, full: int) -> int:
        return max(10, full // 10) if self.quick else full

    def secs(self, full: float) -> float:
        return min(2.0, full) if self.quick else full


#: What a scenario does on one running target: (server, outcome, sizes, output dir, tag).
Body = Callable[[Running, Outcome, Sizes, Path, str], None]


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


def prefix(srv: Running) -> str:
    return "bench:" if srv.name == "switchboard" else "bench."
