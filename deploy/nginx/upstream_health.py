"""Active upstream health for open-source nginx: each host's /readyz decides if it gets traffic.

Polls `http://HOST:PORT/readyz` of every upstream each `--interval` seconds and writes
`--out` (the `switchboard-upstreams.conf` that deploy/nginx/switchboard.conf includes): a host
that is not ready (503, or no answer) is marked `down`; when the file changes, `--reload` runs
(`nginx -s reload`: established WebSocket connections stay on the old workers). Standard library
only, so it runs beside nginx without Switchboard installed:

    python3 upstream_health.py --out /etc/nginx/switchboard-upstreams.conf \
        --reload "nginx -s reload" 10.0.0.11:8000 10.0.0.12:8000 10.0.0.13:8000
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: Passive checks between polls: a host that refuses a connection is skipped this long.
SERVER_LINE = "server {addr} max_fails=1 fail_timeout=5s{down};\n"


def ready(addr: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"http://{addr}/readyz", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def render(states: dict[str, bool]) -> str:
    if not any(states.values()):  # none ready: let nginx try them all rather than serve none
        states = dict.fromkeys(states, True)
    return "".join(
        SERVER_LINE.format(addr=a, down="" if ok else " down") for a, ok in states.items()
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("upstreams", nargs="+", help="HOST:PORT of each Switchboard host")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--reload", default="", help="command run after the file changed")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--once", action="store_true", help="write the file once (all up) and exit")
    args = p.parse_args(argv)
    if args.once:
        args.out.write_text(render(dict.fromkeys(args.upstreams, True)))
        return 0
    written = args.out.read_text() if args.out.exists() else ""
    while True:
        text = render({a: ready(a, args.interval) for a in args.upstreams})
        if text != written:
            args.out.write_text(text)
            written = text
            print("upstreams:", " ".join(text.split()), flush=True)
            if args.reload:
                subprocess.run(shlex.split(args.reload), check=False)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
