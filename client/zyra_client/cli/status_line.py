"""`zyra-remote watch`'s live line at the bottom of a terminal: the job's status, a
progress bar from its events' `progress` and the time it has run, redrawn in place and
erased whenever the job's own output is written above it. When stderr is not a
terminal (a script, a pipe, a log file) nothing is drawn: stderr is the command's own."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24
ERASE = "\r\x1b[K"  # to the line's start, then clear it


class StatusLine:
    def __init__(
        self, job_id: str, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.job_id = job_id
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.status = "waiting"
        self.progress: float | None = None
        self.started = time.monotonic()
        self.shown = False

    def update(self, status: str | None, progress: float | None) -> None:
        if status:
            self.status = status
        if progress is not None:
            self.progress = min(max(progress, 0.0), 1.0)
        self.draw()

    def draw(self) -> None:
        if not self.enabled:
            return
        filled = round((self.progress or 0.0) * BAR_WIDTH)
        percent = "" if self.progress is None else f" {self.progress:4.0%}"
        elapsed = time.monotonic() - self.started
        self.stream.write(f"{ERASE}[{'#' * filled}{'-' * (BAR_WIDTH - filled)}]{percent} "
                          f"{self.status} {elapsed:.1f}s  job {self.job_id}")  # fmt: skip
        self.stream.flush()
        self.shown = True

    def erase(self) -> None:
        """Before anything else is written to the terminal."""
        if self.shown:
            self.stream.write(ERASE)
            self.stream.flush()
            self.shown = False

    def finish(self) -> None:
        """The line as last drawn stays on screen, on a line of its own."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False
