"""Reading ``embed``'s input: lines -> records -> windows, bad lines reported by line number.

Accepted as documented: CRLF line ends, a UTF-8 byte-order mark at the start of the input
(with ``--lines``, at the start of any line), blank lines (ignored and counted).  Rejected, as
bad lines: invalid UTF-8, invalid JSON, a JSON value that is not an object, a missing, empty
or non-string input field, a lone surrogate (``"\\ud800"``; see badinput.py).  Under
``--on-error fail`` the first bad line stops the run; under ``skip`` it is counted and warned
about (the first :data:`MAX_SKIP_WARNINGS`).  A first line that is no JSON object is most
likely plain text read without ``--lines``: its message says so (:data:`PLAIN_TEXT_HINT`).

``--content TEXT`` (:class:`ContentLines`) is one more source of lines: the texts given on
the command line, as the JSONL lines ``{"text": TEXT}``, read like any input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from embctl.console import plural, warn
from embctl.embed.records import InputError, Options, Record, Stats
from embctl.errors import UsageError

if TYPE_CHECKING:
    from embctl.embed.adapter import InputAdapter

BOM = b"\xef\xbb\xbf"
MAX_SKIP_WARNINGS = 20
#: Ends the message of a first line that is no JSON object (without --lines): the advice
#: replaces --on-error skip's, which would only skip every line of a plain-text file.
PLAIN_TEXT_HINT = "for plain text, one text per line, use --lines"

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
            advice = "" if message.endswith(PLAIN_TEXT_HINT) else \
                " (use --on-error skip to skip bad lines)"
            raise InputError(f"line {line}: {message}{advice}")
        self.stats.skipped += 1
        if self.warn_each and self.stats.skipped <= MAX_SKIP_WARNINGS:
            warn(f"line {line}: {message}; skipped")

    def finish(self) -> None:
        """The count of the skipped lines not warned about one by one."""
        if self.warn_each and self.stats.skipped > MAX_SKIP_WARNINGS:
            more = self.stats.skipped - MAX_SKIP_WARNINGS
            warn(f"{plural(more, 'more bad line')} skipped")


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
                 on_bad: OnBad, *, hint_lines: bool = True) -> Iterator[Record]:
    """Parse lines into records; bad lines go to ``on_bad(line, message)``.  ``hint_lines``:
    a first line that is no JSON object says to use --lines (off where there is none)."""
    from embctl.embed.badinput import lone_surrogate

    loads = _json_loads()
    field = opts.text_field
    number = 0
    first = hint_lines and not opts.lines  # the first line with something on it is ahead
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
        was_first, first = first, False
        try:
            obj = loads(line)
        except ValueError as exc:
            if line.startswith("\ufeff"):
                on_bad(number, "byte-order mark in the middle of the input")
            elif was_first:
                on_bad(number, f"not JSON; {PLAIN_TEXT_HINT}")
            else:
                on_bad(number, f"invalid JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            hint = f"; {PLAIN_TEXT_HINT}" if was_first and not isinstance(obj, list) else ""
            on_bad(number, f"expected a JSON object, got {type(obj).__name__}{hint}")
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


class ContentLines:
    """``--content TEXT`` (repeatable): the texts as JSONL lines ``{"<text field>": TEXT}``, so
    they go through the pipeline and the cache as any input, and each output line is the
    object with its embedding: ``{"text": TEXT, "embedding": [...]}``, in the order given."""

    def __init__(self, texts: Iterable[str], field: str) -> None:
        self.texts = list(texts)
        self.field = field

    def __iter__(self) -> Iterator[bytes]:
        for text in self.texts:
            # An argument that is not UTF-8 comes back as the bytes typed: a bad line, named.
            line = json.dumps({self.field: text}, ensure_ascii=False)
            yield line.encode("utf-8", "surrogateescape") + b"\n"

    def close(self) -> None:
        pass


def open_input(adapter: InputAdapter, path: str, opts: Options, content: Iterable[str] = ()
               ) -> IO[bytes] | Iterable[bytes]:
    """What ``embed`` reads: the texts of ``--content``, else the adapter's input (``-i PATH``
    or stdin).  ``--content`` refuses ``-i``: one input, never two mixed."""
    texts = list(content)
    if not texts:
        return adapter.open(path, opts)
    if path != "-":
        raise UsageError("--content and -i are two inputs: give one (texts with -c, a file "
                         "with -i)")
    if adapter.kind != "text":
        raise UsageError(f"--content gives texts; this backend reads {adapter.kind} inputs "
                         "(give -i FILE)")
    opts.lines = False  # the texts are JSON-encoded: a newline inside one stays in it
    return ContentLines(texts, opts.text_field)


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
