"""`switchboard-load SCENARIO --url ws://127.0.0.1:8000/ws [options]`: run one load scenario.

Exit status: 0 when the run completed and the delivery check held; 2 when any publication was lost,
doubled, reordered or refused by the server, when nothing was delivered, or when delivery could not
be checked (each cause named on a `FAIL:` line); 1 on bad parameters or a failed run.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from switchboard_load.coordinator import Coordinator, RunFailed
from switchboard_load.params import ParamError, Params, parse_params
from switchboard_load.progress import Progress
from switchboard_load.report import build, failures, summary


def run(p: Params) -> dict[str, Any]:
    """Run a scenario and return its result document (raises RunFailed)."""
    progress = Progress(quiet=p.quiet)
    collected = Coordinator(p, progress).run()
    doc = build(p, collected)
    if p.json_path:
        with open(p.json_path, "w") as f:
            json.dump(doc, f, indent=2)
    if p.plot_path:
        from switchboard_load.plot import plot

        plot(doc, p.plot_path)
    return doc


def main(argv: list[str] | None = None) -> int:
    try:
        p = parse_params(argv)
    except ParamError as exc:
        print(f"switchboard-load: {exc}", file=sys.stderr)
        return 1
    try:
        doc = run(p)
    except RunFailed as exc:
        print(f"switchboard-load: run failed: {exc}", file=sys.stderr)
        return 1
    print(summary(doc))
    for w in doc["client"]["warnings"][:3]:
        print(f"warning: {w}", file=sys.stderr)
    problems = failures(doc)
    for msg in problems:
        print(f"FAIL: {msg}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
