"""What the pipeline's stages hand each other: the run's options, records, counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embctl.errors import EmbctlError


class InputError(EmbctlError):
    """Bad input at a line; exit 1 under ``--on-error fail``."""


@dataclass
class Options:
    text_field: str = "text"  # the JSON field holding each input (an adapter may change it)
    id_field: str = "id"
    lines: bool = False  # plain text, one text per line
    batch_size: int | None = None  # None: the embedder's preference, else 64
    prefix: str = ""
    on_error: str = "fail"  # "fail" or "skip"
    store_text: bool = False
    window_records: int | None = None  # None: 16 batches (at least 4 per concurrent call)
    concurrency: int | None = None  # None: the embedder's preference, else 1
    window_bytes: int = 8_000_000


@dataclass
class Record:
    line: int  # 1-based line number in the input
    text: str  # the input as the adapter reads it (a text, or e.g. a file path)
    raw: bytes | None = None  # the JSON object as read (JSONL mode), for verbatim passthrough
    obj: dict[str, Any] | None = None


@dataclass
class Stats:
    read: int = 0  # lines read, blank and bad ones included
    embedded: int = 0  # records written
    hits: int = 0  # records served from the cache
    computed: int = 0  # distinct inputs sent to the model
    duplicates: int = 0  # records that reused a text embedded earlier in the run, uncached
    damaged: int = 0  # cached rows that failed their checksum, computed again (in computed)
    skipped: int = 0  # bad lines skipped (--on-error skip)
    blank: int = 0  # blank lines ignored
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        from embctl.console import plural

        parts = [f"{plural(self.read, 'line')} read", f"{self.embedded:,} embedded "
                 f"({plural(self.hits, 'cache hit')}, {self.computed:,} computed"
                 + (f", {plural(self.duplicates, 'duplicate')}" if self.duplicates else "")
                 + (f", {plural(self.damaged, 'damaged row')} recomputed" if self.damaged
                    else "") + ")",
                 f"{self.skipped:,} skipped"]
        if self.blank:
            parts.append(f"{self.blank:,} blank")
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
        return f"embctl: {', '.join(parts)} in {self.seconds:.1f}s ({shown} lines/s)"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)
