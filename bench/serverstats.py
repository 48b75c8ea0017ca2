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
        return json.loads(resp.read())


def memory(stats: dict[str, Any]) -> tuple[int | None, int | None]:
    """(total RSS bytes, total connections): per-process lists win over top-level totals."""
    procs = stats.get("processes")
    if isinstance(procs, dict):
        procs = list(procs.values())
    rss = conns = None
    if isinstance(procs, list) and procs:
        rs = [p.get("rss_bytes") for p in procs if isinstance(p, dict)]
        cs = [p.get("connections") for p in procs if isinstance(p, dict)]
        if rs and all(isinstance(r, int) for r in rs):
            rss = sum(rs)
        if cs and all(isinstance(c, int) for c in cs):
            conns = sum(cs)
    total = stats.get("total") if isinstance(stats.get("total"), dict) else stats
    if rss is None and isinstance(total.get("rss_bytes"), int):
        rss = total["rss_bytes"]
    if conns is None and isinstance(total.get("connections"), int):
        conns = total["connections"]
    return rss, conns


def try_memory(url: str, api_key: str | None) -> tuple[tuple[int | None, int | None], str | None]:
    """memory() of a fresh fetch, or (None, None) and the reason it failed."""
    try:
        return memory(fetch(url, api_key)), None
    except (OSError, ValueError) as exc:
        return (None, None), f"{type(exc).__name__}: {exc}"
