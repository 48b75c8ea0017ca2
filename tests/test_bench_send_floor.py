"""bench.send_floor: every frame of every round reaches a socket, by a bare loop or by the
server's own delivery path, and its CPU is counted."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.parametrize("path", ["floor", "hub"])
def test_send_floor_sends_every_round_to_every_socket(path: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.send_floor", "--sockets", "20", "--rate", "20"]
        + ["--seconds", "1", "--path", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    found = re.search(r"([\d.]+) µs CPU per send \(([\d.]+) system\), ([\d,]+) sends/s", out)
    assert found, out
    per_send, system, rate = float(found[1]), float(found[2]), int(found[3].replace(",", ""))
    assert 360 <= rate <= 440, out  # 20 sockets × 20 rounds a second
    # The kernel splits CPU time into user and system by clock ticks: a run this short (about
    # 2 ms of sending) may show no system time at all, but never more than the whole.
    assert per_send > 0 and 0 <= system <= per_send, out
