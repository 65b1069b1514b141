"""Input adapters: what ``embed`` reads, keys in the cache and hands to ``Embedder.embed``.

The core knows one kind of input, text (:class:`TextAdapter`).  A backend whose inputs are
something else brings its own adapter by overriding ``Backend.input_adapter``, called
as ``input_adapter(options) -> InputAdapter`` before the model is loaded, where
``options`` holds ``prefix`` (``--prefix``, ``embctl.load(prefix=)``) and the backend's own
options, typed as it declares them (``embed`` passes them all; the image backend reads
``path_field``, from ``--path-field`` or ``-O path_field=``).  The default is
``TextAdapter(prefix)``.

An adapter subclasses :class:`InputAdapter`, whose defaults are the text behaviour:

``kind``
    the input kind, written into the cache namespace (``input_kind``).
``prefix``
    written into the namespace too; the text adapter prepends it to every text.
``open(path, opts)``
    check the run's options and open the input (``"-"``: stdin): an iterable of JSONL (or
    text) lines as bytes, with ``close()``.  It may set ``opts.text_field`` (the field that
    holds each input), refuse options that make no sense for its inputs (``UsageError``), and
    serve something other than a file (a folder listed as JSONL lines, say).
``key_bytes(item)``
    the bytes the cache key is made of (with the namespace): the same bytes, the same vector.
``payload(item)``
    what ``Embedder.embed`` gets for the item.
``size(item)``
    the sort key of length-sorted batches (0 everywhere: input order).
``prepare(windows, vectors, on_bad)``
    a pass over the windows of records before they are planned: check them (reporting bad
    records by line through ``on_bad(line, message)`` and dropping them), or compute
    vectors ahead of the model, handing them back through ``payload``.  ``vectors`` is the
    run's :class:`VectorSource` (the Vectorizer), or None in a dry run: then nothing may be
    computed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

from embctl.errors import UsageError

if TYPE_CHECKING:
    from embctl.backends import Backend
    from embctl.embed.records import Options, Record


class VectorSource(Protocol):
    """What an adapter's ``prepare`` may use of the run's Vectorizer."""

    embedder: Any  # the loaded Embedder
    batch_size: int  # inputs per model call

    def key(self, data: bytes) -> bytes:
        """The cache key of ``key_bytes`` output, in this run's namespace."""
        ...

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The cached vectors of ``keys`` (committed or queued); {} without a cache."""
        ...


class InputAdapter:
    """The base of every adapter; its defaults read and key texts (see the module doc)."""

    kind = "text"

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def open(self, path: str, opts: Options) -> IO[bytes] | Iterable[bytes]:
        if path == "-":
            if sys.stdin is None:
                raise UsageError("no input: give -i FILE or pipe JSONL to stdin")
            return sys.stdin.buffer
        try:
            return open(path, "rb")
        except OSError as exc:
            raise UsageError(f"-i {path}: {exc.strerror}") from None

    def key_bytes(self, item: str) -> bytes:
        return item.encode("utf-8", "surrogatepass")

    def payload(self, item: str) -> Any:
        return self.prefix + item if self.prefix else item

    def size(self, item: str) -> int:
        """Sort key for length-sorted batches."""
        return len(item)

    def prepare(self, windows: Iterable[list[Record]], vectors: VectorSource | None,
                on_bad: Callable[[int, str], None]) -> Iterable[list[Record]]:
        """Check (and possibly pre-compute) windows before they are keyed; texts: as is."""
        return windows


class TextAdapter(InputAdapter):
    """Texts: keyed on their UTF-8 bytes, embedded with the prefix prepended."""


def adapter_for(backend: Backend, options: dict[str, Any] | None = None) -> InputAdapter:
    """The backend's adapter (``Backend.input_adapter``; by default the text adapter)."""
    return backend.input_adapter(dict(options or {}))
