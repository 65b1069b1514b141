"""The streaming run of ``embctl embed``: every record of the input, window by window,
through the Vectorizer, written in input order; returns the counters."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any

from embctl.embed.inputs import BadLines, read_records, window_size, windows
from embctl.embed.progress import EmbedProgress, PlainLines, input_size, interval_from_env
from embctl.embed.records import Options, Record, Stats

if TYPE_CHECKING:
    from embctl.embed.outputs import Writer
    from embctl.embed.vectorizer import Job, Vectorizer


def run(vectorizer: Vectorizer, stream: IO[bytes] | Iterable[bytes],
        writer_factory: Callable[[Callable[[], int]], Writer], opts: Options, *,
        progress: EmbedProgress | None = None) -> Stats:
    """Embed every record of ``stream``; return the counters.  Raises InputError on bad input
    under ``--on-error fail`` (the output is then discarded or, on stdout, stops after the
    last complete window).  Closes the vectorizer (and its cache) at the end, and calls the
    embedder's ``finish()`` when it has one (e.g. for a truncation warning).  ``progress``
    (:func:`start_progress`) is fed window by window and batch by
    batch, and closed whatever happens."""
    import numpy as np

    stats = Stats()
    start = time.monotonic()
    embedder = vectorizer.embedder
    adapter = vectorizer.adapter
    shown = progress or EmbedProgress()
    if vectorizer.on_progress is None:  # each batch embedded: the lines done move mid-window
        vectorizer.on_progress = shown.computed
    on_bad = BadLines(opts, stats)

    def dim_hint() -> int:
        return vectorizer.dim or int(embedder.dim)

    try:
        writer = writer_factory(dim_hint)
    except BaseException:
        shown.close()
        raise
    per_window = window_size(opts, vectorizer.batch_size, vectorizer.concurrency)

    def emit(window: list[Record], job: Job) -> None:
        blob, hits, computed, duplicates = vectorizer.finish(job)
        stats.hits += hits
        stats.computed += computed
        stats.duplicates += duplicates
        stats.damaged = len(vectorizer.damaged)
        writer.write(window, np.frombuffer(blob, dtype="<f4").reshape(len(window), -1))
        stats.embedded += len(window)
        shown.window_done()

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
            shown.window_started(len(window), job.hits)
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
        shown.close()
        try:
            writer.close(ok)  # may fail (a full disk): the cache is closed all the same
        finally:
            vectorizer.close()
            embedder.finish()
            stats.seconds = time.monotonic() - start
    on_bad.finish()
    return stats


def start_progress(stream: Any, *, quiet: bool = False, to_stdout: bool = False
                   ) -> EmbedProgress:
    """The progress of a run reading ``stream``, shown on stderr from now on (nothing with
    ``quiet``): a rich bar on a terminal, plain lines off it (embctl/embed/progress.py).
    No bar when the results (``to_stdout``) scroll on the same terminal: they are the
    progress there, and a bar would be drawn across them."""
    size = input_size(stream)
    progress = EmbedProgress(*size) if size else EmbedProgress()
    if quiet:
        return progress
    if sys.stderr.isatty():
        if to_stdout and sys.stdout.isatty():
            return progress
        from embctl.embed.progress_bar import RichBar

        progress.display = RichBar(progress.total)
    else:
        progress.display = PlainLines(progress, sys.stderr, interval_from_env())
    return progress
