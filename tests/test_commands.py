"""The README's two commands, from a clean clone: `make run` serves, `make test` runs pytest."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import tornado.testing

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line.strip() for line in text.splitlines() if line.strip().startswith("make ")]


def test_readme_shows_both_commands_first():
    assert readme_commands()[:2] == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of the committed tree, as CI gets it."""
    dest = tmp_path_factory.mktemp("clone") / "switchboard"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True, timeout=60)
    return dest


def test_make_test_in_clean_clone(clone: Path):
    res = subprocess.run(
        ["make", "test", "PYTEST_ARGS=tests/test_hub.py"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert " passed" in res.stdout


def test_make_run_in_clean_clone(clone: Path, tmp_path: Path):
    sock, port = tornado.testing.bind_unused_port()
    sock.close()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["make", "run", f"ARGS=--port {port}"],
            cwd=clone,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "make run did not serve /healthz"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"Switchboard" in r.read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
