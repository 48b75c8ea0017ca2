"""`python -m switchboard_load SCENARIO --url ...`: the same command as `switchboard-load`.

The guard matters: workers are spawned, and a spawned child imports this module again under
another name; it must not start a second run.
"""

from __future__ import annotations

import sys

from switchboard_load.cli import main

if __name__ == "__main__":
    sys.exit(main())
