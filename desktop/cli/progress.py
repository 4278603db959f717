"""Terminal progress for long jobs: a redrawn bar on a TTY, nothing when piped or quiet.

Kept separate from the commands so `decompose`, `serve` and future commands draw progress the
same way, and so the JSON mode never mixes a bar into machine-readable output (it goes to stderr).
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from layerlift.inference.backends.base import Progress


class ProgressBar:
    """A callable progress sink that redraws at most ~10 times a second."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, event: Progress) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.1 and event.fraction < 1.0:
            return
        self._last_draw = now
        columns = shutil.get_terminal_size((80, 20)).columns
        detail = event.message or event.stage
        if event.step is not None and event.total:
            detail = f"{event.stage} {event.step}/{event.total}"
        width = 30
        filled = round(max(0.0, min(1.0, event.fraction)) * width)
        line = f"[{'#' * filled}{'-' * (width - filled)}] {event.fraction * 100:5.1f}% {detail}"
        self.stream.write("\r" + line[: columns - 1].ljust(columns - 1))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Move past the bar so the summary starts on a clean line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
