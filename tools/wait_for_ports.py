"""Wait until TCP ports on 127.0.0.1 accept connections: lets a Procfile start the web
processes after Redis and the MongoDB-compatible server (honcho starts everything at once).

    python tools/wait_for_ports.py 6379 27017 [--timeout 30]
"""

from __future__ import annotations

import argparse
import socket
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description="wait for TCP ports on 127.0.0.1")
    p.add_argument("ports", type=int, nargs="+")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()
    deadline = time.monotonic() + args.timeout
    for port in args.ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    print(f"port {port} not open after {args.timeout:g} s", file=sys.stderr)
                    return 1
                time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
