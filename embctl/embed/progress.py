"""The progress of ``embctl embed`` on stderr: a rich bar on a terminal, rare plain lines off it.

:class:`EmbedProgress` holds the counters.  The run feeds it from its own thread, window by
window and batch by batch (the Vectorizer's ``on_progress``), so the lines done move while a
window is in the model, not once a window; a display reads it from another thread:

- on a terminal, :mod:`embctl.embed.progress_bar` (rich, imported only then, by
  :func:`embctl.embed.run.start_progress`), redrawn by rich's own thread four times a second:
  a bar of the input's bytes when the input is a regular file (``-i FILE``, or stdin
  redirected from one), else a spinner;
- off a terminal (Docker logs, CI), :class:`PlainLines`: ``embedding: 40% (2,000 lines,
  35 lines/s, 0 cache hits, about 1m 20s left)`` at each 10% of the bytes, at most one line
  per ``EMBCTL_PROGRESS_INTERVAL`` seconds (10) and at least one a minute; with no size, one
  line per interval.  A run shorter than the interval prints none.

The bytes done are the input's position (``tell()``, read once a window, not once a line) at
the end of each finished window, plus the finished share of the window in the model.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol

from embctl.console import plural

INTERVAL_ENV = "EMBCTL_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0
#: Off a terminal with a known size: a line at least this many intervals apart (a minute).
HEARTBEAT = 6


@dataclass(frozen=True)
class Snapshot:
    """What a display shows, taken at one moment."""

    lines: int  # records done: written, plus the done part of the window in the model
    hits: int  # cache hits among them
    done: int  # input bytes done (0 without a size)
    total: int | None  # input bytes of a regular file, else None
    elapsed: float  # seconds since the run started

    @property
    def fraction(self) -> float | None:
        return min(self.done / self.total, 1.0) if self.total else None

    @property
    def rate(self) -> float:
        """Lines a second over the run."""
        return self.lines / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def left(self) -> float | None:
        """Seconds left at the run's average pace; None before anything is done."""
        if not self.total or self.done <= 0:
            return None
        return self.elapsed * max(self.total - self.done, 0) / self.done


class Display(Protocol):
    def show(self, snap: Snapshot) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Window:
    records: int
    hits: int  # found in the cache when the window was planned
    end: int  # input bytes up to the window's last line
    computed: int = 0  # distinct inputs of it embedded so far


class EmbedProgress:
    """The counters of one run.  ``total``: the input's size in bytes (None: unknown);
    ``position()``: the input's byte offset now; ``clock``: seconds, for tests."""

    def __init__(self, total: int | None = None, position: Callable[[], int] | None = None,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self._position = position
        self._origin = 0
        self._origin = self._tell()
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._windows: deque[_Window] = deque()  # started, not yet written, oldest first
        self._lines = 0  # records of the written windows
        self._hits = 0
        self._done = 0  # bytes up to the last written window
        self.display: Display | None = None

    def _tell(self) -> int:
        try:
            return self._position() if self._position else 0
        except (OSError, ValueError):
            return self._origin

    # -- fed by the run (its thread) -------------------------------------------------------

    def window_started(self, records: int, hits: int) -> None:
        """A window was read (the input is past its last line) and planned."""
        end = self._tell() - self._origin if self.total else 0
        with self._lock:
            self._windows.append(_Window(records, hits, end))
        self._changed()

    def computed(self, count: int) -> None:
        """``count`` distinct inputs of the oldest started window were embedded (a batch)."""
        with self._lock:
            if self._windows:
                self._windows[0].computed += count
        self._changed()

    def window_done(self) -> None:
        """The oldest started window was written."""
        with self._lock:
            window = self._windows.popleft()
            self._lines += window.records
            self._hits += window.hits
            self._done = max(self._done, window.end)
        self._changed()

    def _changed(self) -> None:
        if self.display is not None:
            self.display.show(self.snapshot())

    def close(self) -> None:
        display, self.display = self.display, None
        if display is not None:
            display.close()

    # -- read by the displays (any thread) -------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            lines, hits, done = self._lines, self._hits, self._done
            if self._windows:
                head = self._windows[0]
                part = min(head.hits + head.computed, head.records)
                lines += part
                hits += head.hits
                if head.records and head.end > done:
                    done += (head.end - done) * part // head.records
        return Snapshot(lines, hits, done, self.total, self._clock() - self._start)


# -- off a terminal ---------------------------------------------------------------------------


class Cadence:
    """When a plain line is due: with a size, at each new 10% step (not 100%: the summary
    follows), at most one line per ``interval`` and at least one per HEARTBEAT intervals;
    without one, once per ``interval``.  Times are the run's elapsed seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = 0.0
        self._step = 0

    def due(self, fraction: float | None, now: float) -> bool:
        since = now - self._last
        if since < self.interval:
            return False
        if fraction is not None:
            step = int(fraction * 10)
            if fraction >= 1.0 or (step <= self._step and
                                   not (self.interval > 0 and since >= HEARTBEAT * self.interval)):
                return False
            self._step = max(step, self._step)
        self._last = now
        return True


def plain_line(snap: Snapshot) -> str:
    """``embedding: 40% (2,000 lines, 35 lines/s, 0 cache hits, about 1m 20s left)``."""
    counts = (f"{plural(snap.lines, 'line')}, {rate_text(snap.rate)} lines/s, "
              f"{plural(snap.hits, 'cache hit')}")
    if snap.fraction is None:
        return f"embedding: {counts}"
    left = snap.left
    more = f", about {duration(left)} left" if left is not None else ""
    return f"embedding: {snap.fraction * 100:.0f}% ({counts}{more})"


class PlainLines:
    """Plain lines on ``out`` when their :class:`Cadence` says so: checked at every change
    and (``ticker``) by a thread of its own, so that a line comes while a slow batch is in the
    model."""

    def __init__(self, progress: EmbedProgress, out: IO[str], interval: float, *,
                 ticker: bool = True) -> None:
        self._progress = progress
        self._out = out  # the stream of this run (in-process tests swap sys.stderr)
        self._cadence = Cadence(interval)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._period = min(max(interval, 0.05), 1.0)
        self._thread: threading.Thread | None = None
        if ticker:
            self._thread = threading.Thread(target=self._tick, name="embctl-progress",
                                            daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self._period):
            self.show(self._progress.snapshot())

    def show(self, snap: Snapshot) -> None:
        with self._lock:
            if self._stop.is_set() or not self._cadence.due(snap.fraction, snap.elapsed):
                return
            try:
                self._out.write(plain_line(snap) + "\n")
                self._out.flush()
            except (OSError, ValueError):  # stderr gone (a closed pipe): progress is optional
                self._stop.set()

    def close(self) -> None:
        with self._lock:
            self._stop.set()
        if self._thread is not None:
            self._thread.join()


# -- the input and the interval ---------------------------------------------------------------


def input_size(stream: Any) -> tuple[int, Callable[[], int]] | None:
    """(the bytes left to read, the stream's ``tell``) when ``stream`` reads a regular file
    (``-i FILE``, ``< FILE``); None for a pipe, a terminal, a listing (image folders)."""
    try:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        left = info.st_size - stream.tell()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return (left, stream.tell) if left > 0 else None


def interval_from_env() -> float:
    """EMBCTL_PROGRESS_INTERVAL seconds (default 10); a bad value is the default."""
    try:
        value = float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= 0 else DEFAULT_INTERVAL


# -- text -------------------------------------------------------------------------------------


def rate_text(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


def duration(seconds: float) -> str:
    """``45s``, ``1m 20s``, ``2h 05m``."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
