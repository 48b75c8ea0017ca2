"""The whole server restarted on the embedded default keeps every acknowledged publication.

Runs `python -m server` for real, as an operator would: the parent starts the embedded MongoDB
server on `[mongo] data_dir`, and a second server on the same directory refuses clearly.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.testing

from tests.support import ws_open

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0


def write_config(path: Path, data_dir: Path) -> Path:
    cfg = path / "config.toml"
    cfg.write_text(
        f'[mongo]\nurl = ""\ndata_dir = "{data_dir}"\n\n'
        "[namespaces.default]\nhistory_size = 1000\nhistory_ttl_s = 3600\n"
    )
    return cfg


def free_port() -> int:
    sock, port = tornado.testing.bind_unused_port()
    sock.close()
    return port


class ServerProcess:
    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "--dev",
                "--port",
                str(self.port),
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def ready(self) -> None:
        client = tornado.httpclient.AsyncHTTPClient()
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            try:
                resp = await client.fetch(f"http://127.0.0.1:{self.port}/readyz", raise_error=False)
                if resp.code == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("server not ready in time")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=30)  # also closes the stderr pipe
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        return self.proc.returncode


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.asyncio
async def test_restart_keeps_acknowledged_and_refuses_second_server(
    tmp_path: Path, data_dir: Path, servers: list[ServerProcess]
) -> None:
    config = write_config(tmp_path, data_dir)
    first = ServerProcess(config)
    servers.append(first)
    await first.ready()

    second = ServerProcess(config)
    servers.append(second)
    _, err = second.proc.communicate(timeout=START_TIMEOUT_S)
    assert second.proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "in use by another embedded MongoDB server" in lines[0], err

    ws = await ws_open(f"ws://127.0.0.1:{first.port}/ws")
    epoch = (await ws.ok("subscribe", channel="news"))["epoch"]
    acked = [
        await ws.ok("publish", channel="news", data={"n": n, "$k": {"a.b": n}}) for n in range(40)
    ]
    await ws.close()
    assert [a["offset"] for a in acked] == list(range(1, 41))
    assert first.stop() == 0

    again = ServerProcess(config)
    servers.append(again)
    await again.ready()
    ws = await ws_open(f"ws://127.0.0.1:{again.port}/ws")
    result = await ws.ok("subscribe", channel="news", since={"offset": 0, "epoch": epoch})
    assert result["recovered"] is True and result["epoch"] == epoch
    assert [p["offset"] for p in result["missed"]] == list(range(1, 41))
    assert [p["data"] for p in result["missed"]] == [{"n": n, "$k": {"a.b": n}} for n in range(40)]
    # The restarted server continues past every offset the first may have handed out without
    # storing it (its unstored window); those in between are void, so recovery is complete.
    after = (await ws.ok("publish", channel="news", data="after"))["offset"]
    assert after > 41 and after == result["offset"] + 1
    await ws.close()
    ws = await ws_open(f"ws://127.0.0.1:{again.port}/ws")
    result = await ws.ok("subscribe", channel="news", since={"offset": 40, "epoch": epoch})
    assert result["recovered"] is True
    assert [(p["offset"], p["data"]) for p in result["missed"]] == [(after, "after")]
    await ws.close()
    assert again.stop() == 0
