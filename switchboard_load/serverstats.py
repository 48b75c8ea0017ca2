"""Read the server's memory and connection count from `GET /api/stats`, tolerant of its shape.

Why tolerant: Switchboard reports per-process figures and totals, the baseline a flat object; the
bench needs only RSS and connections summed over processes, wherever they are.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def stats_url(ws_url: str, api_url: str | None) -> str:
    """`/api/stats` on the API base URL, or on the WebSocket URL's host."""
    if api_url:
        return api_url.rstrip("/") + "/api/stats"
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/api/stats", "", ""))


def fetch(url: str, api_key: str | None, timeout: float = 10.0) -> dict[str, Any]:
    req = urllib.request.Request(url)
    if api_key:
        req.add_header("Authorization", f"apikey {api_key}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback-checked URL)
        stats: dict[str, Any] = json.loads(resp.read())
        return stats


def _total(items: list[Any], key: str) -> int | None:
    """Sum of `key` over the items, or None unless every item has it as an integer."""
    values = [item.get(key) if isinstance(item, dict) else None for item in items]
    if not values or not all(isinstance(v, int) for v in values):
        return None
    return sum(v for v in values if isinstance(v, int))


def memory(stats: dict[str, Any]) -> tuple[int | None, int | None]:
    """(total RSS bytes, total connections): per-process lists win over top-level totals."""
    procs = stats.get("processes")
    if isinstance(procs, dict):
        procs = list(procs.values())
    if not isinstance(procs, list):
        procs = []
    total = stats.get("total")
    flat = [total if isinstance(total, dict) else stats]
    rss = _total(procs, "rss_bytes")
    conns = _total(procs, "connections")
    return (
        rss if rss is not None else _total(flat, "rss_bytes"),
        conns if conns is not None else _total(flat, "connections"),
    )


def cpu_seconds(stats: dict[str, Any]) -> float | None:
    """CPU seconds (user + system) summed over the server's processes, when it reports them."""
    procs = stats.get("processes")
    if isinstance(procs, dict):
        procs = list(procs.values())
    values = [p.get("cpu_s") for p in procs] if isinstance(procs, list) else []
    if not values or not all(isinstance(v, (int, float)) for v in values):
        return None
    return float(sum(values))


def try_cpu(url: str, api_key: str | None) -> float | None:
    """cpu_seconds() of a fresh fetch, or None when the server does not tell."""
    try:
        return cpu_seconds(fetch(url, api_key))
    except (OSError, ValueError):
        return None


def try_memory(url: str, api_key: str | None) -> tuple[tuple[int | None, int | None], str | None]:
    """memory() of a fresh fetch, or (None, None) and the reason it failed."""
    try:
        return memory(fetch(url, api_key)), None
    except (OSError, ValueError) as exc:
        return (None, None), f"{type(exc).__name__}: {exc}"
