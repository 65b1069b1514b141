"""The rich display of :mod:`embctl.embed.progress`, on a terminal only (this module imports
rich): a bar of the input's bytes, or a spinner when the size is unknown, redrawn by rich's
own thread four times a second (the spinner, the rate and the elapsed time move while a batch
is in the model), and at once when the percentage changes.

    embedding ━━━━━━━╸━━━━━━━━━━  39% 102.3/259.4 kB · 1,178 lines · 0 cache hits · 10 lines/s
      · ETA 2:00                               (one line; the bar takes what the rest leaves)
    ⠸ embedding · 475 lines · 0 cache hits · 8.1 lines/s · 0:00:58

(docs/embed.md#progress has them as a terminal showed them.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column
from rich.text import Text

from embctl.console import plural
from embctl.embed.progress import rate_text

if TYPE_CHECKING:
    from embctl.embed.progress import Snapshot


def _one_line() -> Column:
    return Column(no_wrap=True)


class _Counts(ProgressColumn):
    """Lines done, cache hits and lines a second over the run (it slows while a batch is in
    the model: what the run does now)."""

    def __init__(self) -> None:
        super().__init__(table_column=_one_line())

    def render(self, task: Task) -> Text:
        lines, hits = task.fields.get("lines", 0), task.fields.get("hits", 0)
        elapsed = task.elapsed or 0.0
        rate = rate_text(lines / elapsed if elapsed > 0 else 0.0)
        return Text(f"· {plural(lines, 'line')} · {plural(hits, 'cache hit')} · {rate} lines/s",
                    style="progress.data.speed")


class _Eta(ProgressColumn):
    """``ETA 1:36``: rich's estimate from the last 30 s of progress."""

    def __init__(self) -> None:
        super().__init__(table_column=_one_line())

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        if left is None:
            return Text("· ETA -:--", style="progress.remaining")
        minutes, seconds = divmod(int(left + 0.5), 60)
        hours, minutes = divmod(minutes, 60)
        text = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
        return Text(f"· ETA {text}", style="progress.remaining")


class RichBar:
    """A rich Progress on stderr (or ``console``), transient: the run's summary replaces it.
    stdout is left alone (it carries the vectors); stderr's lines (warnings) print above it."""

    def __init__(self, total: int | None, console: Console | None = None) -> None:
        console = console or Console(stderr=True)
        if total:  # the bar takes what the rest leaves; the bytes only where they fit
            size = (DownloadColumn(table_column=_one_line()),) if console.width >= 100 else ()
            columns: tuple[ProgressColumn, ...] = (
                TextColumn("embedding"), BarColumn(bar_width=None, table_column=Column(ratio=1)),
                TaskProgressColumn(), *size, _Counts(), _Eta())
        else:
            columns = (SpinnerColumn(), TextColumn("embedding"), _Counts(),
                       TextColumn("·"), TimeElapsedColumn())
        self._known = bool(total)
        self._rich = Progress(*columns, console=console,
                              refresh_per_second=4, transient=True, expand=bool(total),
                              redirect_stdout=False, redirect_stderr=True)
        self._task = self._rich.add_task("embedding", total=total or None, lines=0, hits=0)
        self._percent = -1
        self._rich.start()

    def show(self, snap: Snapshot) -> None:
        percent = int(snap.fraction * 100) if snap.fraction is not None else -1
        redraw = percent != self._percent  # a frame per percent, whatever the refresh timing
        self._percent = percent
        self._rich.update(self._task, completed=snap.done if self._known else snap.lines,
                          lines=snap.lines, hits=snap.hits, refresh=redraw)

    def close(self) -> None:
        self._rich.stop()
