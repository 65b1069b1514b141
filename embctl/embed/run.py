"""The streaming run of ``embctl embed``: every record of the input, window by window,
through the Vectorizer, written in input order; returns the counters."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING

from embctl.embed.inputs import BadLines, read_records, window_size, windows
from embctl.embed.records import Options, Record, Stats

if TYPE_CHECKING:
    from embctl.embed.outputs import Writer
    from embctl.embed.vectorizer import Job, Vectorizer


class Progress:
    """One self-overwriting line on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, stats: Stats, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        rate = stats.read / max(now - self.start, 1e-9)
        sys.stderr.write(f"\rembedding: {stats.read:,} lines, {rate:,.0f} lines/s, "
                         f"{stats.hits:,} cache hits\x1b[K")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def run(vectorizer: Vectorizer, stream: IO[bytes] | Iterable[bytes],
        writer_factory: Callable[[Callable[[], int]], Writer], opts: Options, *,
        progress: bool = False) -> Stats:
    """Embed every record of ``stream``; return the counters.  Raises InputError on bad input
    under ``--on-error fail`` (the output is then discarded or, on stdout, stops after the
    last complete window).  Closes the vectorizer (and its cache) at the end, and calls the
    embedder's ``finish()`` when it has one (e.g. for a truncation warning)."""
    import numpy as np

    stats = Stats()
    start = time.monotonic()
    embedder = vectorizer.embedder
    adapter = vectorizer.adapter
    shown = Progress(progress)
    on_bad = BadLines(opts, stats)

    def dim_hint() -> int:
        return vectorizer.dim or int(embedder.dim)

    writer = writer_factory(dim_hint)
    per_window = window_size(opts, vectorizer.batch_size, vectorizer.concurrency)

    def emit(window: list[Record], job: Job) -> None:
        blob, hits, computed, duplicates = vectorizer.finish(job)
        stats.hits += hits
        stats.computed += computed
        stats.duplicates += duplicates
        stats.damaged = len(vectorizer.damaged)
        writer.write(window, np.frombuffer(blob, dtype="<f4").reshape(len(window), -1))
        stats.embedded += len(window)
        shown.update(stats)

    # With concurrent embed calls (API backends) the next window is read, looked up and
    # queued before this one is waited for: the calls never drain at a window's end.
    ahead = vectorizer.concurrency > 1
    ok = False
    try:
        started: tuple[list[Record], Job] | None = None
        records = read_records(stream, opts, stats, on_bad)
        for window in adapter.prepare(windows(records, per_window, opts.window_bytes),
                                      vectorizer, on_bad):
            job = vectorizer.start([r.text for r in window])
            if not ahead:
                emit(window, job)
                continue
            if started is not None:
                emit(*started)
            started = (window, job)
        if started is not None:
            emit(*started)
        ok = True
    finally:
        shown.clear()
        try:
            writer.close(ok)  # may fail (a full disk): the cache is closed all the same
        finally:
            vectorizer.close()
            embedder.finish()
            stats.seconds = time.monotonic() - start
    on_bad.finish()
    return stats
