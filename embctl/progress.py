"""Byte progress on stderr: a rich bar on a terminal, a few plain lines elsewhere.

Docker build logs and CI capture stderr without a terminal; there a bar would print hundreds
of carriage-return frames, so we print a line at start, at each quarter and at the end.
"""

from __future__ import annotations

import sys
import time


class ByteProgress:
    def __init__(self, label: str, total: int, *, quiet: bool = False,
                 plain: bool = True) -> None:
        self.label = label
        self.total = max(total, 0)
        self.quiet = quiet
        self.plain = plain  # print plain lines when stderr is not a terminal
        self.done = 0
        self._start = time.monotonic()
        self._next_quarter = 1
        self._rich = None
        self._task = None

    def __enter__(self) -> ByteProgress:
        if self.quiet:
            return self
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._rich = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._rich.start()
            self._task = self._rich.add_task(self.label, total=self.total or None)
        return self

    def update(self, done: int) -> None:
        self.done = min(done, self.total) if self.total else done
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done)
            return
        if not self.total or not self.plain:
            return
        quarter = min(3, self.done * 4 // self.total)
        if quarter >= self._next_quarter:
            print(f"{self.label}: {25 * quarter}% ({self.done:,} of {self.total:,} bytes)",
                  file=sys.stderr, flush=True)
            self._next_quarter = quarter + 1

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start
