"""Several worker processes on one port: fork after binding, forward signals, wait.

Each worker is a whole single-threaded server with its own IOLoop; they share the listening
sockets (bound with SO_REUSEPORT before the fork, so the kernel spreads connections) and talk
through Redis. The parent only supervises: it forwards SIGTERM/SIGINT so every worker shuts down
gracefully, restarts a worker that died on its own after running a while, and gives up when one
dies straight after starting (a crash loop helps nobody).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("switchboard")

#: A worker that dies sooner than this after its start is not restarted.
MIN_LIFETIME_S = 5.0


def run_workers(count: int, work: Callable[[], int]) -> int:
    """Run `work` in `count` forked processes until they exit; returns the exit status."""
    workers: dict[int, float] = {}  # pid -> start time
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            _signal(pid, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    for _ in range(count):
        workers[_fork(work)] = time.monotonic()
    status = 0
    while workers:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        started = workers.pop(pid, None)
        if started is None:
            continue  # not a worker: e.g. a service child of the parent
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping:
            status = max(status, abs(code) if code != -signal.SIGTERM else 0)
            continue
        log.error("worker %d exited with %d", pid, code)
        if time.monotonic() - started < MIN_LIFETIME_S:
            status = 1
            forward(signal.SIGTERM, None)
        else:
            workers[_fork(work)] = time.monotonic()
    return status


def _fork(work: Callable[[], int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        code = work()
    except BaseException:
        log.exception("worker failed")
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
