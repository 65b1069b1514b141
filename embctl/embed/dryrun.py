"""``embed --dry-run``: what a run would send, planned window by window exactly as the run
plans (:meth:`embctl.embed.vectorizer.Vectorizer.plan`), with nothing embedded or written.

A planned window's misses stay claimed until the end, as if still in flight, so an input
repeated in a later window counts as a duplicate, not as sent again: "cached" counts only what
the cache held before the run.  The adapter's ``prepare`` gets no Vectorizer: it may check
records, never compute.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from embctl.console import plural
from embctl.embed.inputs import BadLines, read_records, window_size, windows
from embctl.embed.records import Options, Stats

if TYPE_CHECKING:
    from embctl.embed.vectorizer import Vectorizer


@dataclass
class DryRun:
    """What ``embed`` would send: nothing is embedded, nothing written."""

    read: int = 0  # lines read
    records: int = 0  # inputs (records) found
    cached: int = 0  # records served by the cache
    duplicates: int = 0  # records repeating an input seen earlier in the input
    to_send: int = 0  # distinct inputs the model would get
    batches: int = 0  # embed calls (requests, for API backends)
    tokens: int | None = None  # estimated tokens to send; None: the backend cannot tell
    tokens_exact: bool = False
    over_limit: int = 0  # inputs whose count passes the backend's per-input limit
    input_limit: int | None = None
    skipped: int = 0
    blank: int = 0

    def summary(self) -> str:
        parts = [f"{plural(self.read, 'line')} read",
                 f"{plural(self.records, 'input')}: {self.cached:,} cached",
                 f"{self.to_send:,} would be sent in {plural(self.batches, 'request')}"]
        if self.duplicates:
            parts.append(plural(self.duplicates, "duplicate"))
        if self.tokens is not None:
            how = "" if self.tokens_exact else " (estimated)"
            parts.append(f"~{plural(self.tokens, 'token')}{how}")
        if self.skipped:
            parts.append(f"{self.skipped:,} skipped")
        line = f"embctl: dry run: {', '.join(parts)}; nothing sent"
        if self.over_limit:
            line += (f"\nembctl: warning: {plural(self.over_limit, 'input')} may exceed the "
                     f"model's {self.input_limit:,}-token limit")
        return line

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def dry_run(vectorizer: Vectorizer, stream: IO[bytes] | Iterable[bytes], opts: Options
            ) -> DryRun:
    """Count what :func:`embctl.embed.run.run` would embed, batch by batch, without calling
    the model; closes the vectorizer (and its cache) at the end."""
    embedder = vectorizer.embedder
    adapter = vectorizer.adapter
    read = Stats()
    plan = DryRun()
    count = embedder.count_tokens
    limit = embedder.max_input_tokens
    plan.input_limit = limit
    plan.tokens_exact = bool(embedder.tokens_exact or count is None)
    if count is not None or embedder.token_lengths is not None:
        plan.tokens = 0
    on_bad = BadLines(opts, read, warn_each=False)
    per_window = window_size(opts, vectorizer.batch_size, vectorizer.concurrency)
    try:
        records = read_records(stream, opts, read, on_bad)
        for window in adapter.prepare(windows(records, per_window, opts.window_bytes), None,
                                      on_bad):
            job = vectorizer.plan([r.text for r in window])
            vectorizer.claim(job)  # never finished: later windows borrow, as a run's would
            plan.records += len(window)
            plan.cached += job.hits
            plan.duplicates += job.duplicates
            plan.to_send += len(job.misses)
            plan.batches += len(job.batches)
            if count is None and job.tokens is not None:  # counted once, by the plan
                plan.tokens += job.tokens  # type: ignore[operator]
            elif callable(count):
                for item in job.misses.values():
                    n = count(adapter.payload(item))
                    plan.tokens += n  # type: ignore[operator]
                    if limit and n > limit:
                        plan.over_limit += 1
    finally:
        vectorizer.close()
    plan.read, plan.skipped, plan.blank = read.read, read.skipped, read.blank
    return plan
