"""Showing how far mksquashfs is: a bar on a terminal, a line now and then in a log."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30


class Progress:
    """Reports percentages for one image; on a terminal the bar redraws in place,
    otherwise a plain 'netboot image: NAME 40%' line at most every `interval` seconds."""

    def __init__(self, name: str, stream: TextIO | None = None, interval: float = 2.0) -> None:
        self.name = name
        self.stream = stream or sys.stderr
        self.interval = interval
        self.terminal = self.stream.isatty()
        self.last_percent = -1
        self.last_line: float | None = None

    def update(self, percent: int) -> None:
        percent = max(0, min(100, percent))
        if percent == self.last_percent:
            return
        self.last_percent = percent
        if self.terminal:
            filled = BAR_WIDTH * percent // 100
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.stream.write(f"\rnetboot image: {self.name} [{bar}] {percent:3d}%")
            self.stream.flush()
            return
        now = time.monotonic()
        if percent == 100 or self.last_line is None or now - self.last_line >= self.interval:
            self.last_line = now
            print(f"netboot image: {self.name} {percent}%", file=self.stream, flush=True)

    def done(self) -> None:
        """End the bar's line so the next message starts on its own."""
        if self.terminal and self.last_percent >= 0:
            self.stream.write("\n")
            self.stream.flush()
