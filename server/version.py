"""This Switchboard's version, as installed (pyproject.toml), for figures and pages."""

from __future__ import annotations

from importlib import metadata


def _read() -> str:
    try:
        return metadata.version("switchboard")
    except metadata.PackageNotFoundError:  # run from a checkout without installing it
        return "0.0.0+checkout"


VERSION = _read()
