"""``embctl embed``'s pipeline: JSONL (or text lines) in, vectors out, through the cache.

    read lines -> windows of records -> cache lookup -> unique misses, sorted by length,
    in batches -> embed (``Embedder.concurrency`` batches at a time) -> commit each batch
    -> write the window in input order

Memory is bounded by one window (``window_records`` records or ``window_bytes`` of input),
two with concurrent embed calls (the next window is started before this one is written),
whatever the input size.  Each finished batch is queued for commit at once, on its own
thread, so a killed run loses at most the batches in flight.  A text is embedded once per run
however often it repeats: within a window as a duplicate, across windows as a cache hit (or
taken from the earlier window still in flight).

Backends plug in through :class:`embctl.backends.Embedder`; optional attributes the pipeline
honours: ``concurrency`` (parallel ``embed`` calls, default 1), ``batch_size`` (preferred batch
size when ``--batch-size`` is not given), ``input_kind`` and ``finish()`` (called once at the
end, e.g. for the truncation warning); ``cancel()`` (the run is stopping: the calls running
now retry nothing); ``expected_dim`` (the vector size when known before
the model runs: a new cache file's page size is chosen for it); ``max_batch_tokens`` with
``count_tokens(text)`` (a batch is also cut before its estimated tokens pass that budget: API
request limits); ``ref`` (the reference as given, for messages) and ``model_files`` (the files
the vectors are made from: those that are Hugging Face cache blobs are checked against their
hashes before the first batch; see embctl/vectors/guard.py, which also rejects any batch holding
NaN or infinity).  What is keyed and what is passed to ``embed`` is decided by an
:class:`InputAdapter`: texts today; images (path in, file bytes keyed) later.

numpy is imported by the functions that run, not by this module's import.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from embctl.console import warn
from embctl.errors import EmbctlError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from embctl.backends import Embedder
    from embctl.outputs import Writer
    from embctl.vectors.committer import Committer
    from embctl.vectors.store import VectorStore

BOM = b"\xef\xbb\xbf"
MAX_SKIP_WARNINGS = 20
NAMESPACE_VERSION = 1


class InputError(EmbctlError):
    """Bad input at a line; exit 1 under ``--on-error fail``."""


class NotStarted(Exception):
    """A batch that was queued behind a failed one and never sent."""


# -- options and counters ------------------------------------------------------------------


@dataclass
class Options:
    text_field: str = "text"
    id_field: str = "id"
    lines: bool = False  # plain text, one text per line
    batch_size: int | None = None  # None: the embedder's preference, else 64
    prefix: str = ""
    on_error: str = "fail"  # "fail" or "skip"
    store_text: bool = False
    window_records: int | None = None  # None: 16 batches (at least 4 per concurrent call)
    concurrency: int | None = None  # None: the embedder's preference, else 1
    window_bytes: int = 8_000_000
    base_dir: str | None = None  # image inputs: where relative paths start (see pipeline_images)


@dataclass
class Stats:
    read: int = 0  # lines read, blank and bad ones included
    embedded: int = 0  # records written
    hits: int = 0  # records served from the cache
    computed: int = 0  # distinct inputs sent to the model
    duplicates: int = 0  # records that reused a text embedded earlier in the run, uncached
    skipped: int = 0  # bad lines skipped (--on-error skip)
    blank: int = 0  # blank lines ignored
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        parts = [f"{self.read:,} lines read", f"{self.embedded:,} embedded "
                 f"({self.hits:,} cache hits, {self.computed:,} computed"
                 + (f", {self.duplicates:,} duplicates" if self.duplicates else "") + ")",
                 f"{self.skipped:,} skipped"]
        if self.blank:
            parts.append(f"{self.blank:,} blank")
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
        return f"embctl: {', '.join(parts)} in {self.seconds:.1f}s ({shown} lines/s)"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- inputs --------------------------------------------------------------------------------


@dataclass
class Record:
    line: int  # 1-based line number in the input
    text: str  # the input (a text; for images, a file path)
    raw: bytes | None = None  # the JSON object as read (JSONL mode), for verbatim passthrough
    obj: dict[str, Any] | None = None


class InputAdapter:
    """What is keyed in the cache and what the embedder gets, for one input kind."""

    kind = "text"

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def key_bytes(self, item: str) -> bytes:
        return item.encode("utf-8", "surrogatepass")

    def payload(self, item: str) -> Any:
        return self.prefix + item if self.prefix else item

    def size(self, item: str) -> int:
        """Sort key for length-sorted batches."""
        return len(item)

    def prepare(self, windows: Iterable[list[Record]], vectorizer: Vectorizer | None,
                on_bad: Callable[[int, str], None]) -> Iterable[list[Record]]:
        """Check (and possibly pre-compute) windows before they are keyed; texts: as is."""
        return windows


def adapter_for(input_kind: str, prefix: str = "", base_dir: str | None = None) -> InputAdapter:
    if input_kind == "text":
        return InputAdapter(prefix)
    if input_kind == "image":  # keyed on the file's bytes; see embctl/pipeline_images.py
        from embctl.pipeline_images import ImageAdapter

        return ImageAdapter(base_dir)
    raise UsageError(f"inputs of kind {input_kind!r} are not supported by embctl embed yet")


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


def read_records(stream: IO[bytes], opts: Options, stats: Stats,
                 on_bad: Callable[[int, str], None]) -> Iterator[Record]:
    """Parse lines into records.  Bad lines go to ``on_bad(line, message)``, which raises
    (fail) or counts (skip).  Accepted as documented: CRLF line ends, a UTF-8 byte-order mark
    at the start of the input (with ``--lines``, at the start of any line), blank lines
    (ignored and counted).  A lone surrogate (``"\\ud800"``) is a bad line."""
    from embctl.badinput import lone_surrogate

    loads = _json_loads()
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
        text = obj.get(opts.text_field)
        if text is None:
            on_bad(number, f"no {opts.text_field!r} field")
            continue
        if not isinstance(text, str):
            on_bad(number, f"{opts.text_field!r} is {type(text).__name__}, not a string")
            continue
        if not text.strip():
            on_bad(number, f"empty {opts.text_field!r}")
            continue
        yield Record(number, text, raw.rstrip(), obj)
    if boms:
        more = f" and {len(boms) - 1:,} more" if len(boms) > 1 else ""
        warn(f"line {boms[0]:,}{more}: byte-order mark removed from the start of the line "
             "(concatenated files?)")


def windows(records: Iterable[Record], max_records: int, max_bytes: int) -> Iterator[list[Record]]:
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


# -- the cache-aware vectorizer -------------------------------------------------------------


@dataclass
class Job:
    """One window's inputs between :meth:`Vectorizer.start` and :meth:`Vectorizer.finish`."""

    keys: list[bytes]
    vecs: dict[bytes, Any] = field(default_factory=dict)  # key -> vector bytes, as found
    borrowed: dict[bytes, Job] = field(default_factory=dict)  # keys an earlier job computes
    misses: dict[bytes, str] = field(default_factory=dict)  # key -> input, to compute here
    batches: list[list[bytes]] = field(default_factory=list)
    futures: list[Future] = field(default_factory=list)  # one per batch, when run in the pool
    hits: int = 0  # keys found in the cache (or queued for it)


class Vectorizer:
    """Vectors for a list of inputs: cache hits first, then unique misses in length-sorted
    batches, each batch committed to the cache as soon as it is embedded (``vectors``, or
    ``start`` then ``finish`` to overlap windows)."""

    def __init__(self, embedder: Embedder, store: VectorStore | None, adapter: InputAdapter,
                 *, batch_size: int | None = None, store_text: bool = False,
                 on_progress: Callable[[int], None] | None = None,
                 concurrency: int | None = None) -> None:
        self.embedder = embedder
        self.store = store
        self.adapter = adapter
        self.batch_size = max(1, batch_size or getattr(embedder, "batch_size", None) or 64)
        self.concurrency = max(1, int(concurrency or getattr(embedder, "concurrency", 1) or 1))
        self.store_text = store_text
        self.on_progress = on_progress
        self.dim: int | None = store.dim if store else None
        from embctl.vectors.store import KeyMaker

        self._key = store.key if store else KeyMaker("no-cache")
        self._pool: ThreadPoolExecutor | None = None
        self._committer: Committer | None = None  # started by the first job with misses
        self._planned: dict[bytes, Job] = {}  # keys a started, unfinished job will compute
        self._error: BaseException | None = None  # the first failed batch's, in any thread
        self._warned = False
        self._files_checked = False  # the model's cache blobs, against their hashes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()
            if committer.error is not None and self.store is not None:
                self._disable_cache(committer.error)
        if self.store is not None:
            self.store.close()

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The cached vectors of ``keys``, committed or still queued; {} without a cache."""
        if self.store is None:
            return {}
        queued: dict[bytes, bytes] = {}
        if self._committer is not None:  # queued first: see embctl/vectors/committer.py
            queued = self._committer.pending(keys)
            if queued:
                keys = [k for k in keys if k not in queued]
        try:
            found = self.store.get_many(keys)
        except sqlite3.Error as exc:
            self._disable_cache(exc)
            return queued
        found.update(queued)
        return found

    def _disable_cache(self, exc: BaseException) -> None:
        if not self._warned:
            warn(f"vector cache disabled: cannot write {self.store.path if self.store else ''}"
                 f" ({exc}); continuing without it")
            self._warned = True
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()
        if self.store is not None:
            self.store.close()
        self.store = None

    def vectors(self, items: Sequence[str]) -> tuple[bytes, int, int, int]:
        """-> (float32 LE matrix bytes in input order, hits, computed, duplicates)."""
        return self.finish(self.start(items))

    def start(self, items: Sequence[str]) -> Job:
        """Look ``items`` up and, with ``concurrency`` > 1, start embedding the misses now, so
        that the caller can read and start the next window while these are in flight.
        Finish jobs in the order they were started."""
        job = Job([self._key(self.adapter.key_bytes(item)) for item in items])
        unique = list(dict.fromkeys(job.keys))
        # Keys an unfinished earlier job computes first, then queued commits and the file:
        # a key leaves _planned only after its vector is queued for commit (or the job ended).
        job.borrowed = {k: self._planned[k] for k in unique if k in self._planned}
        if self.store is not None:
            found = self.lookup([k for k in unique if k not in job.borrowed])
            if self.dim is None and found:
                self.dim = len(next(iter(found.values()))) // 4
            if self.dim is not None:
                found = {k: v for k, v in found.items() if len(v) == self.dim * 4}
            job.vecs.update(found)
        job.hits = sum(1 for k in job.keys if k in job.vecs)
        for key, item in zip(job.keys, items, strict=True):
            if key not in job.vecs and key not in job.borrowed and key not in job.misses:
                job.misses[key] = item
        if job.misses and not self._files_checked:  # before the model computes anything
            from embctl.vectors.guard import check_model_files

            check_model_files(self.embedder)
            self._files_checked = True
        for key in job.misses:
            self._planned[key] = job
        touched = self.store.take_stale() if self.store is not None else []
        if touched:
            self._commit([], touched)
        order = sorted(job.misses, key=lambda k: -self.adapter.size(job.misses[k]))
        job.batches = self._batches(order, job.misses)
        if job.batches and self.store is not None and self._committer is None:
            self._start_committer()
        if self.concurrency > 1 and job.batches:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency,
                                                thread_name_prefix="embctl-embed")
            for batch in job.batches:  # the pool runs `concurrency` at a time, in this order
                job.futures.append(self._pool.submit(self._run_batch, batch, job.misses))
        return job

    def finish(self, job: Job) -> tuple[bytes, int, int, int]:
        """Wait for (or, with ``concurrency`` 1, compute) a started job's vectors; -> (float32
        LE matrix bytes in input order, hits, computed, duplicates).  On a failure nothing more
        is started, the batches in flight are still committed, then the error is raised."""
        try:
            if job.futures:
                for batch, future in zip(job.batches, job.futures, strict=True):
                    try:
                        rows = future.result()
                    except BaseException as exc:
                        self._stop()
                        error, self._error = self._error, None  # the next call starts afresh
                        if error is not None and not isinstance(exc, KeyboardInterrupt):
                            raise error from None  # the first failure, not its echoes
                        raise
                    self._keep(job, batch, rows)
            else:
                try:
                    for batch in job.batches:
                        self._keep(job, batch, self._run_batch(batch, job.misses))
                except BaseException:
                    self._error = None  # raised here as it is; the next call starts afresh
                    raise
            if self._committer is not None and self._committer.error is not None:
                self._disable_cache(self._committer.error)
            for key, owner in job.borrowed.items():
                job.vecs[key] = owner.vecs[key]
        finally:
            for key in job.misses:
                if self._planned.get(key) is job:
                    del self._planned[key]
        computed = len(job.misses)
        duplicates = len(job.keys) - job.hits - computed
        return b"".join(job.vecs[k] for k in job.keys), job.hits, computed, duplicates

    def _run_batch(self, batch: list[bytes], misses: dict[bytes, str]) -> list[memoryview]:
        """Embed one batch (-> its vectors, views of the backend's array, in batch order) and
        queue it for the cache at once, on a pool thread whatever the main thread is doing (a
        killed run loses only the batches in flight).  The commit is queued before the result
        is returned, so its keys are in the committer's memory before finish() takes them out
        of ``_planned``."""
        if self._error is not None:  # queued behind a failure: not started
            raise NotStarted()
        try:
            blob = self._embed([self.adapter.payload(misses[k]) for k in batch])
        except BaseException as exc:
            if self._error is None:  # the first failure stops the rest at once, not when
                self._error = exc  # the main thread gets to this batch
                self._cancel_embedder()
            raise
        step = len(blob) // len(batch)
        rows = [blob[i * step:(i + 1) * step] for i in range(len(batch))]  # views, not copies
        committer = self._committer  # any thread: only the committer is used
        if committer is not None and committer.error is None:
            committer.submit([(key, row, misses[key] if self.store_text else None)
                              for key, row in zip(batch, rows, strict=True)])
        return rows

    def _keep(self, job: Job, batch: list[bytes], rows: list[memoryview]) -> None:
        job.vecs.update(zip(batch, rows, strict=True))
        if self.on_progress:
            self.on_progress(len(batch))

    def _stop(self) -> None:
        """After a failure: cancel the batches not started, wait for those running (their
        vectors are paid for: each queues its own commit)."""
        self._cancel_embedder()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._planned.clear()  # the jobs started after this one are abandoned

    def _cancel_embedder(self) -> None:
        cancel = getattr(self.embedder, "cancel", None)
        if callable(cancel):
            cancel()

    def _batches(self, order: list[bytes], misses: dict[bytes, str]) -> list[list[bytes]]:
        """``batch_size`` keys a batch; also cut at the embedder's ``max_batch_tokens`` budget
        (estimated with its ``count_tokens``) when it declares one (API request limits)."""
        budget = getattr(self.embedder, "max_batch_tokens", None)
        count = getattr(self.embedder, "count_tokens", None)
        if not budget or not callable(count):
            return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        batches: list[list[bytes]] = []
        batch: list[bytes] = []
        tokens = 0
        for key in order:
            n = count(self.adapter.payload(misses[key]))
            if batch and (len(batch) >= self.batch_size or tokens + n > budget):
                batches.append(batch)
                batch, tokens = [], 0
            batch.append(key)
            tokens += n
        if batch:
            batches.append(batch)
        return batches

    def _embed(self, payloads: list[Any]) -> memoryview:
        import numpy as np

        from embctl.vectors.guard import check_finite

        vectors = np.asarray(self.embedder.embed(payloads), dtype="<f4")
        if vectors.ndim != 2 or vectors.shape[0] != len(payloads):
            raise EmbctlError(f"the backend returned shape {vectors.shape} for "
                              f"{len(payloads)} inputs")
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            raise EmbctlError(f"the backend returned {vectors.shape[1]}-dim vectors; "
                              f"the cache holds {self.dim}-dim ones")
        check_finite(self.embedder, vectors)  # NaN or inf: never written, never cached
        # The array's own memory, as bytes (no copy): backends return a new array per call.
        return memoryview(np.ascontiguousarray(vectors)).cast("B")

    def _start_committer(self) -> None:
        from embctl.vectors.committer import Committer

        try:
            self._committer = Committer(self.store)  # type: ignore[arg-type]
        except (sqlite3.Error, OSError) as exc:
            self._disable_cache(exc)

    def _commit(self, rows: list[tuple[bytes, bytes, str | None]], touched: list[bytes]) -> None:
        """Queue one transaction for the committer thread (main thread only)."""
        if self.store is None:
            return
        if self._committer is None:
            self._start_committer()
        if self._committer is None:
            return
        if self._committer.error is not None:
            self._disable_cache(self._committer.error)
            return
        self._committer.submit(rows, touched)

    def embed_matrix(self, items: Sequence[str]) -> np.ndarray:
        """The Python API's entry: a float32 (n, dim) array."""
        import numpy as np

        blob, *_ = self.vectors(items)
        dim = self.dim or getattr(self.embedder, "dim", 0)
        return np.frombuffer(blob, dtype="<f4").reshape(len(items), dim).astype(np.float32)


def namespace_for(embedder: Embedder, adapter: InputAdapter) -> dict[str, Any]:
    """The embedder's namespace plus what the pipeline itself changes (prefix)."""
    ns = dict(embedder.namespace)
    ns["prefix"] = adapter.prefix
    ns["input_kind"] = adapter.kind
    ns["v"] = NAMESPACE_VERSION
    return ns


def open_store(namespace: dict[str, Any], ref: str, embedder: Embedder | None = None
               ) -> VectorStore | None:
    """The namespace's cache, or None (with one warning) when it cannot be opened.  A missing
    file is created by the first commit: a run that commits nothing leaves none."""
    from embctl.vectors.store import VectorStore

    try:
        return VectorStore.open(namespace, ref=ref, create=False,
                                dim=getattr(embedder, "expected_dim", None))
    except (sqlite3.Error, OSError) as exc:
        warn(f"vector cache unavailable ({exc}); embedding without it")
        return None


# -- progress ------------------------------------------------------------------------------


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


# -- the run -------------------------------------------------------------------------------


def run(embedder: Embedder, store: VectorStore | None, stream: IO[bytes], writer_factory:
        Callable[[Callable[[], int]], Writer], opts: Options, *, progress: bool = False,
        input_kind: str = "text") -> Stats:
    """Embed every record of ``stream``; return the counters.  Raises InputError on bad input
    under ``--on-error fail`` (the output is then discarded or, on stdout, stops after the
    last complete window)."""
    stats = Stats()
    start = time.monotonic()
    adapter = adapter_for(input_kind, opts.prefix, opts.base_dir)
    vectorizer = Vectorizer(embedder, store, adapter, batch_size=opts.batch_size,
                            store_text=opts.store_text, concurrency=opts.concurrency)
    if store is not None and opts.store_text:
        try:
            store.mark_stores_text()
        except sqlite3.Error as exc:
            vectorizer._disable_cache(exc)
    shown = Progress(progress)
    warned = 0

    def on_bad(line: int, message: str) -> None:
        nonlocal warned
        if opts.on_error == "fail":
            raise InputError(f"line {line}: {message} (use --on-error skip to skip bad lines)")
        stats.skipped += 1
        warned += 1
        if warned <= MAX_SKIP_WARNINGS:
            warn(f"line {line}: {message}; skipped")

    def dim_hint() -> int:
        return vectorizer.dim or int(embedder.dim)

    import numpy as np

    writer = writer_factory(dim_hint)
    per_window = opts.window_records or vectorizer.batch_size * max(16, 4 * vectorizer.concurrency)

    def emit(window: list[Record], job: Job) -> None:
        blob, hits, computed, duplicates = vectorizer.finish(job)
        stats.hits += hits
        stats.computed += computed
        stats.duplicates += duplicates
        writer.write(window, np.frombuffer(blob, dtype="<f4").reshape(len(window), -1))
        stats.embedded += len(window)
        shown.update(stats)

    # With concurrent embed calls (API backends) the next window is read, looked up and
    # queued before this one is waited for: the calls never drain at a window's end.
    ahead = vectorizer.concurrency > 1
    ok = False
    try:
        started: tuple[list[Record], Job] | None = None
        for window in adapter.prepare(windows(read_records(stream, opts, stats, on_bad),
                                              per_window, opts.window_bytes), vectorizer, on_bad):
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
            finish = getattr(embedder, "finish", None)
            if callable(finish):
                finish()
            stats.seconds = time.monotonic() - start
    if stats.skipped > MAX_SKIP_WARNINGS:
        warn(f"{stats.skipped - MAX_SKIP_WARNINGS:,} more bad lines skipped")
    return stats


# -- dry run -------------------------------------------------------------------------------


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
        parts = [f"{self.read:,} lines read", f"{self.records:,} inputs: {self.cached:,} cached",
                 f"{self.to_send:,} would be sent in {self.batches:,} "
                 f"{'request' if self.batches == 1 else 'requests'}"]
        if self.duplicates:
            parts.append(f"{self.duplicates:,} duplicates")
        if self.tokens is not None:
            how = "" if self.tokens_exact else " (estimated)"
            parts.append(f"~{self.tokens:,} tokens{how}")
        if self.skipped:
            parts.append(f"{self.skipped:,} skipped")
        line = f"embctl: dry run: {', '.join(parts)}; nothing sent"
        if self.over_limit:
            line += (f"\nembctl: warning: {self.over_limit:,} inputs may exceed the model's "
                     f"{self.input_limit:,}-token limit")
        return line

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def dry_run(embedder: Embedder, store: VectorStore | None, stream: IO[bytes], opts: Options,
            *, input_kind: str = "text") -> DryRun:
    """Count what :func:`run` would embed, batch by batch, without calling the model."""
    result = Stats()
    plan = DryRun()
    adapter = adapter_for(input_kind, opts.prefix, opts.base_dir)
    vectorizer = Vectorizer(embedder, store, adapter, batch_size=opts.batch_size,
                            concurrency=opts.concurrency)
    count = getattr(embedder, "count_tokens", None)
    limit = getattr(embedder, "max_input_tokens", None)
    plan.input_limit = limit
    plan.tokens_exact = bool(getattr(embedder, "tokens_exact", False))
    if callable(count):
        plan.tokens = 0

    def on_bad(line: int, message: str) -> None:
        if opts.on_error == "fail":
            raise InputError(f"line {line}: {message} (use --on-error skip to skip bad lines)")
        result.skipped += 1

    seen: set[bytes] = set()
    per_window = opts.window_records or vectorizer.batch_size * max(16, 4 * vectorizer.concurrency)
    for window in adapter.prepare(windows(read_records(stream, opts, result, on_bad), per_window,
                                          opts.window_bytes), None, on_bad):
        plan.records += len(window)
        keys = [vectorizer._key(adapter.key_bytes(r.text)) for r in window]
        unique = [k for k in dict.fromkeys(keys) if k not in seen]
        found = store.get_many(unique) if store is not None else {}
        misses = {}
        for key, record in zip(keys, window, strict=True):
            if key in found:
                plan.cached += 1
            elif key in seen or key in misses:
                plan.duplicates += 1
            else:
                misses[key] = record.text
        seen.update(unique)
        order = sorted(misses, key=lambda k: -adapter.size(misses[k]))
        plan.batches += len(vectorizer._batches(order, misses))
        plan.to_send += len(misses)
        if callable(count):
            for text in misses.values():
                n = count(adapter.payload(text))
                plan.tokens += n  # type: ignore[operator]
                if limit and n > limit:
                    plan.over_limit += 1
    if store is not None:
        store.close()
    plan.read, plan.skipped, plan.blank = result.read, result.skipped, result.blank
    return plan
