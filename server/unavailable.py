"""The one exception every backing service's outage becomes.

The broker, the store and presence each raise their own subclass (so a log line says which is
down); callers that only need to answer `unavailable` catch this base.
"""

from __future__ import annotations


class Unavailable(Exception):
    """A backing service cannot be reached now; callers reply `unavailable` and retry later."""
