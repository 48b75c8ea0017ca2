"""RFC 6455 conformance: the Autobahn|Testsuite cases, run by kosoku, against the echo endpoint.

    python tools/conformance.py [--max-message-bytes B] [--case ID ...]

Starts `python -m server.ws.echo` on a free loopback port with the given limit and runs every
Autobahn case against it, except the permessage-deflate ones (12.*, 13.*: the server offers no
compression) and the 9.* limits cases whose messages are longer than B (the server closes
those with 1009, as configured). kosoku (pinned in the dev extra) runs Autobahn's own case
files under Python 3; Autobahn's fuzzingclient itself needs Python 2.

Prints one line per case that is not OK and a summary; exits 1 unless every case is OK or
INFORMATIONAL (both for its messages and for its closing handshake). docs/conformance.md has
the results, and the kosoku command that writes the HTML reports.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from kosoku import FailureError, run_fuzzingclient

ROOT = Path(__file__).resolve().parent.parent
#: Autobahn's limits cases and the length of their messages.
MESSAGE_BYTES = {
    **{
        f"9.{group}.{i}": size
        for group in (1, 2)
        for i, size in enumerate(
            (64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20), start=1
        )
    },
    **{f"9.{group}.*": 4 << 20 for group in (3, 4)},
    **{f"9.{group}.*": 1 << 20 for group in (5, 6)},
}
NOT_OFFERED = ("12.*", "13.*")  # permessage-deflate
PASSING = {"OK", "INFORMATIONAL"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python tools/conformance.py", description=__doc__)
    p.add_argument("--max-message-bytes", type=int, default=65536)
    p.add_argument("--case", action="append", help="case id or glob (default: all)")
    return p.parse_args(argv)


def excluded(max_message_bytes: int) -> list[str]:
    over = [case for case, size in MESSAGE_BYTES.items() if size > max_message_bytes]
    return [*NOT_OFFERED, *over]


async def run(args: argparse.Namespace) -> int:
    echo = subprocess.Popen(
        [sys.executable, "-m", "server.ws.echo", "--port", "0"]
        + ["--max-message-bytes", str(args.max_message_bytes)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None
        url = echo.stdout.readline().split()[-1]  # "echo on ws://127.0.0.1:N/echo"
        skip = excluded(args.max_message_bytes)
        try:
            results = await run_fuzzingclient(url, args.case, skip)
        except FailureError as failure:
            results = failure.results
    finally:
        echo.terminate()
        echo.wait(10)
        if echo.stdout is not None:
            echo.stdout.close()
    tally: Counter[str] = Counter()
    bad = 0
    for r in results:
        verdict = (r.behavior.value, r.behavior_close.value)
        tally[f"{verdict[0]}/{verdict[1]}"] += 1
        if verdict != ("OK", "OK"):
            print(f"{r.case_id}: {verdict[0]}, close {verdict[1]}")
        if not {verdict[0], verdict[1]} <= PASSING:
            bad += 1
    summary = ", ".join(f"{n} {k}" for k, n in tally.most_common())
    print(
        f"max_message_bytes {args.max_message_bytes}: {len(results)} cases: {summary}; "
        f"not run: {' '.join(skip)}"
    )
    return 1 if bad or not results else 0


def main(argv: Sequence[str] | None = None) -> None:
    raise SystemExit(asyncio.run(run(parse_args(argv))))


if __name__ == "__main__":
    main()
