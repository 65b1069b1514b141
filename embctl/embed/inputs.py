"""Reading ``embed``'s input: lines -> records -> windows, bad lines reported by line number.

Accepted as documented: CRLF line ends, a UTF-8 byte-order mark at the start of the input
(with ``--lines``, at the start of any line), blank lines (ignored and counted).  Rejected, as
bad lines: invalid UTF-8, invalid JSON, a JSON value that is not an object, a missing, empty
or non-string input field, a lone surrogate (``"\\ud800"``; see badinput.py).  Under
``--on-error fail`` the first bad line stops the run; under ``skip`` it is counted and warned
about (the first :data:`MAX_SKIP_WARNINGS`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from embctl.console import warn
from embctl.embed.records import InputError, Options, Record, Stats

BOM = b"\xef\xbb\xbf"
MAX_SKIP_WARNINGS = 20

#: ``on_bad(line, message)``: raise (fail) or count (skip) a bad line.
OnBad = Callable[[int, str], None]


class BadLines:
    """The ``on_bad`` of a run: raises :class:`InputError` under ``--on-error fail``, else
    counts into ``stats.skipped`` and (``warn_each``) warns about the first few."""

    def __init__(self, opts: Options, stats: Stats, *, warn_each: bool = True) -> None:
        self.fail = opts.on_error == "fail"
        self.stats = stats
        self.warn_each = warn_each

    def __call__(self, line: int, message: str) -> None:
        if self.fail:
            raise InputError(f"line {line}: {message} (use --on-error skip to skip bad lines)")
        self.stats.skipped += 1
        if self.warn_each and self.stats.skipped <= MAX_SKIP_WARNINGS:
            warn(f"line {line}: {message}; skipped")

    def finish(self) -> None:
        """The count of the skipped lines not warned about one by one."""
        if self.warn_each and self.stats.skipped > MAX_SKIP_WARNINGS:
            warn(f"{self.stats.skipped - MAX_SKIP_WARNINGS:,} more bad lines skipped")


def _json_loads() -> Callable[[str], Any]:
    """orjson's parser when installed (about 3x faster), falling back to json's for what
    orjson refuses and json accepts (integers past 64 bits, NaN), and for its error text."""
    try:
        import orjson
    except ImportError:
        return json.loads

    def loads(text: str) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)

    return loads


def read_records(stream: IO[bytes] | Iterable[bytes], opts: Options, stats: Stats,
                 on_bad: OnBad) -> Iterator[Record]:
    """Parse lines into records; bad lines go to ``on_bad(line, message)``."""
    from embctl.embed.badinput import lone_surrogate

    loads = _json_loads()
    field = opts.text_field
    number = 0
    boms: list[int] = []  # --lines: lines after the first that started with a byte-order mark
    for raw in stream:
        number += 1
        stats.read += 1
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.startswith(BOM) and (number == 1 or opts.lines):
            # Plain text: a BOM later in the input is where a concatenated file began; it is
            # no part of the text (removed, with a warning).  JSONL: an error (invalid JSON).
            raw = raw[len(BOM):]
            if number > 1:
                boms.append(number)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            on_bad(number, f"invalid UTF-8 at byte {exc.start + 1}")
            continue
        if not line.strip():
            stats.blank += 1
            continue
        if opts.lines:
            yield Record(number, line)
            continue
        try:
            obj = loads(line)
        except ValueError as exc:
            if line.startswith("\ufeff"):
                on_bad(number, "byte-order mark in the middle of the input")
            else:
                on_bad(number, f"invalid JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            on_bad(number, f"expected a JSON object, got {type(obj).__name__}")
            continue
        if (surrogate := lone_surrogate(line, obj)) is not None:
            on_bad(number, surrogate)
            continue
        text = obj.get(field)
        if text is None:
            on_bad(number, f"no {field!r} field")
            continue
        if not isinstance(text, str):
            on_bad(number, f"{field!r} is {type(text).__name__}, not a string")
            continue
        if not text.strip():
            on_bad(number, f"empty {field!r}")
            continue
        yield Record(number, text, raw.rstrip(), obj)
    if boms:
        more = f" and {len(boms) - 1:,} more" if len(boms) > 1 else ""
        warn(f"line {boms[0]:,}{more}: byte-order mark removed from the start of the line "
             "(concatenated files?)")


def windows(records: Iterable[Record], max_records: int, max_bytes: int) -> Iterator[list[Record]]:
    """Records in windows of ``max_records`` records or ``max_bytes`` of input text."""
    window: list[Record] = []
    size = 0
    for record in records:
        window.append(record)
        size += len(record.text)
        if len(window) >= max_records or size >= max_bytes:
            yield window
            window, size = [], 0
    if window:
        yield window


def window_size(opts: Options, batch_size: int, concurrency: int) -> int:
    """Records per window: ``--window`` or 16 batches, at least 4 per concurrent call."""
    return opts.window_records or batch_size * max(16, 4 * concurrency)
