"""Several worker processes on one port: fork after binding, supervise, restart in turn.

Each worker is a whole single-threaded server with its own IOLoop; they share the listening
sockets (bound before the fork, so the kernel spreads connections) and talk through Redis. The
parent only supervises:
- SIGTERM/SIGINT go to every worker, which drains its clients and exits; the parent then lets
  go of its copies of the listening sockets (`release`), so once the workers stop accepting,
  the port refuses connects instead of queueing them where nobody accepts (a proxy in front
  would wait on them until the last process exits, rather than trying another host);
- SIGHUP is a rolling restart: one worker at a time, a replacement is started and reports
  ready before the old one drains, so the port never stops accepting and the drained clients
  land on running workers (a zero-downtime reload);
- a worker that dies on its own after running a while is replaced; one that dies straight after
  starting stops everything (a crash loop helps nobody).

Signals only wake the parent (a self-pipe via `signal.set_wakeup_fd`); all work happens in its
loop, never inside a signal handler.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("switchboard")

#: A worker that dies sooner than this after its start is not restarted.
MIN_LIFETIME_S = 5.0
#: How long a replacement may take to report ready during a rolling restart.
READY_TIMEOUT_S = 60.0

#: What a worker runs: given a function to call once it is listening, it returns an exit code.
Work = Callable[[Callable[[], None]], int]


@dataclass
class _Worker:
    pid: int
    started: float
    ready_fd: int  # read end: a byte arrives when the worker listens
    ready: bool = False


@dataclass
class _Supervisor:
    work: Work
    release: Callable[[], None]
    workers: dict[int, _Worker] = field(default_factory=dict)
    signals: list[int] = field(default_factory=list)
    stopping: bool = False
    status: int = 0
    #: Rolling restart: old workers still to replace, the replacement being waited for, and
    #: the old worker being drained.
    to_replace: list[int] = field(default_factory=list)
    replacement: int | None = None
    retiring: int | None = None

    def start(self) -> _Worker:
        worker = _fork(self.work)
        self.workers[worker.pid] = worker
        return worker

    def run(self, count: int) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._note)
        for _ in range(count):
            self.start()
        while self.workers:
            fds = [wake_r] + [w.ready_fd for w in self.workers.values() if not w.ready]
            readable, _, _ = select.select(fds, [], [], 1.0)
            if wake_r in readable:
                os.read(wake_r, 512)
            for w in list(self.workers.values()):
                if not w.ready and w.ready_fd in readable and os.read(w.ready_fd, 1):
                    w.ready = True
            self._reap()
            for signum in self.signals:
                self._on_signal(signum)
            self.signals.clear()
            self._roll()
        signal.set_wakeup_fd(-1)
        return self.status

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        self.signals.append(signum)

    def _on_signal(self, sig: int) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
            self.stop_all()
        elif sig == signal.SIGHUP and not self.stopping:
            if self.to_replace or self.replacement or self.retiring:
                log.info("rolling restart already under way")
            else:
                self.to_replace = list(self.workers)
                log.info("rolling restart of %d workers", len(self.to_replace))

    def stop_all(self) -> None:
        self.stopping = True
        self.to_replace.clear()
        for pid in self.workers:
            _signal(pid, signal.SIGTERM)
        self.release()

    def _roll(self) -> None:
        """One step of a rolling restart: start a replacement, then drain the old worker."""
        if self.stopping:
            return
        if self.replacement is not None:
            new = self.workers.get(self.replacement)
            if new is None:  # the replacement died: stop rolling, keep what runs
                log.error("rolling restart stopped: a replacement worker died")
                self.replacement, self.to_replace = None, []
            elif new.ready:
                self.replacement = None
                if self.retiring is not None:
                    _signal(self.retiring, signal.SIGTERM)
            elif time.monotonic() - new.started > READY_TIMEOUT_S:
                log.error("rolling restart stopped: a replacement was not ready in time")
                _signal(new.pid, signal.SIGTERM)
                self.replacement, self.retiring, self.to_replace = None, None, []
            return
        if self.retiring is not None:
            if self.retiring in self.workers:
                return  # still draining
            self.retiring = None
        while self.to_replace and self.to_replace[0] not in self.workers:
            self.to_replace.pop(0)  # already gone
        if self.to_replace:
            self.retiring = self.to_replace.pop(0)
            self.replacement = self.start().pid
            if not self.to_replace:
                log.info("rolling restart: last worker being replaced")

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue  # not a worker: e.g. a service child of the parent
            os.close(worker.ready_fd)
            code = os.waitstatus_to_exitcode(wait_status)
            if self.stopping or pid == self.retiring:
                if code not in (0, -signal.SIGTERM):
                    log.error("worker %d exited with %d while stopping", pid, code)
                    self.status = max(self.status, abs(code))
                continue
            log.error("worker %d exited with %d", pid, code)
            if time.monotonic() - worker.started < MIN_LIFETIME_S:
                self.status = 1
                self.stop_all()
            else:
                self.start()


def run_workers(count: int, work: Work, release: Callable[[], None] = lambda: None) -> int:
    """Run `work` in `count` forked processes until they exit; returns the exit status.
    `release` is called once when stopping: it closes what the parent holds only for forking."""
    return _Supervisor(work, release).run(count)


def _fork(work: Work) -> _Worker:
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_w)
        return _Worker(pid, time.monotonic(), ready_r)
    os.close(ready_r)
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        code = work(lambda: _tell_ready(ready_w))
    except BaseException:
        log.exception("worker failed")
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _tell_ready(fd: int) -> None:
    try:
        os.write(fd, b"r")
        os.close(fd)
    except OSError:
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
