"""Files that ship inside the package: page templates, static files and the sample config.

Why here and found next to this module: an installed wheel has no checkout around it, so paths
relative to the working directory or the repository would break the pages (500 on `/`, 404 on
`/static/switchboard.js`) as soon as Switchboard runs from anywhere else.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"
SAMPLE_CONFIG = PACKAGE / "config.toml"
#: The config read when `--config` is not given and it exists in the working directory.
LOCAL_CONFIG = Path("config.toml")


def config_path(given: str | None) -> Path:
    """The config to read: `--config`, else ./config.toml, else the sample shipped here.

    The sample's secrets are placeholders, refused without --dev, so falling back to it can
    never start a production server with known secrets.
    """
    if given is not None:
        return Path(given)
    return LOCAL_CONFIG if LOCAL_CONFIG.exists() else SAMPLE_CONFIG
