"""Open-file limit: one socket is one fd, and the soft limit is often far below the hard one."""

from __future__ import annotations

import resource


def raise_nofile() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit (20,000 here); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
