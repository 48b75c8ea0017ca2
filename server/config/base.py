"""What every section shares: the one error type and the check that raises it."""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A config mistake, phrased for the person who made it."""


def _check(key: str, ok: bool, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {allowed}, got {value!r}")
