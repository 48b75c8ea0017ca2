"""What the fault and soak scenarios need to know of a process, read from Linux's /proc.

Why not psutil: it ships without type information (mypy --strict would need stubs the project
does not pin), and these four facts are a few lines each.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def children(pid: int) -> list[int]:
    """The direct children of `pid` (none if it is gone)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        return []
    return out


def age_s(pid: int) -> float | None:
    """Seconds since `pid` started, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    started = int(stat.rsplit(")", 1)[1].split()[19]) / _TICKS  # field 22: starttime
    return uptime - started


def cpu_s(pid: int) -> float | None:
    """User and system CPU seconds `pid` has used, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15: utime, stime


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except OSError:
        return None


def open_files(pid: int) -> int | None:
    """File descriptors `pid` holds (sockets included)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
