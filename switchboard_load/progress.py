"""Live progress: one rewritten line on a terminal, plain lines (one every few seconds) otherwise.

Why: on a terminal a run should be watchable without scrolling; in CI logs or under `make bench`
the same information must stay readable as ordinary lines.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, quiet: bool = False, stream: TextIO | None = None, every_s: float = 5.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.quiet = quiet
        self.every_s = every_s
        self._last = 0.0
        self._width = 0

    def update(self, line: str) -> None:
        """Show a status line: rewritten in place on a tty, else printed at most every few s."""
        if self.quiet:
            return
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
            self.stream.flush()
        elif time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            print(line, file=self.stream, flush=True)

    def say(self, line: str, always: bool = False) -> None:
        """A line that stays on screen: phase changes (not when quiet) and warnings (always)."""
        if self.quiet and not always:
            return
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        print(line, file=self.stream, flush=True)
