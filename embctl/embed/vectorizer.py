"""The cache-aware vectorizer: vectors for a window of inputs, each distinct input embedded
once, each batch committed to the cache as soon as it is embedded.

:meth:`Vectorizer.plan` is the planning, shared with the dry run: key every input, drop
duplicates, borrow what an unfinished earlier window computes, look the rest up in the cache
(and the committer's queue), and cut the misses, longest first, into batches
(:mod:`embctl.embed.batching`).  :meth:`Vectorizer.start` plans, claims the misses and, with
``concurrency`` > 1, sends the batches to a thread pool; :meth:`Vectorizer.finish` waits for
(or computes) them and returns the window's vectors in input order.

Optional members of the Embedder used here: ``batch_size`` and ``concurrency`` (preferences,
when the run gives none), ``max_batch_tokens`` with ``count_tokens(payload)`` (a token budget
per call), ``expected_dim``, ``cancel()`` (the run is stopping: the calls running now retry
nothing), and, through embctl/vectors/guard.py, ``ref`` and ``model_files`` (checked against
their hashes before the first batch; every batch is checked for NaN and infinity).

numpy is imported by the functions that run, not by this module's import.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embctl.console import plural, warn
from embctl.embed.batching import split, split_padded
from embctl.errors import EmbctlError

if TYPE_CHECKING:
    import numpy as np

    from embctl.backends import Embedder
    from embctl.embed.adapter import InputAdapter
    from embctl.vectors.committer import Committer
    from embctl.vectors.store import VectorStore


class NotStarted(Exception):
    """A batch that was queued behind a failed one and never sent."""


@dataclass
class Job:
    """One window's plan, then its vectors, between :meth:`Vectorizer.start` and
    :meth:`Vectorizer.finish`."""

    keys: list[bytes]
    vecs: dict[bytes, Any] = field(default_factory=dict)  # key -> vector bytes, as found
    borrowed: dict[bytes, Job] = field(default_factory=dict)  # keys an earlier job computes
    misses: dict[bytes, Any] = field(default_factory=dict)  # key -> input, to compute here
    batches: list[list[bytes]] = field(default_factory=list)
    futures: list[Future] = field(default_factory=list)  # one per batch, when run in the pool
    hits: int = 0  # keys found in the cache (or queued for it)
    tokens: int | None = None  # the misses' tokens, when the backend counted them

    @property
    def duplicates(self) -> int:
        """Inputs neither found nor computed here: repeats within the window, or borrowed."""
        return len(self.keys) - self.hits - len(self.misses)


class Vectorizer:
    """Vectors for lists of inputs: cache hits first, then unique misses in length-sorted
    batches (``vectors``, or ``start`` then ``finish`` to overlap windows)."""

    def __init__(self, embedder: Embedder, store: VectorStore | None, adapter: InputAdapter,
                 *, batch_size: int | None = None, store_text: bool = False,
                 on_progress: Callable[[int], None] | None = None,
                 concurrency: int | None = None) -> None:
        self.embedder = embedder
        self.store = store
        self.adapter = adapter
        self.batch_size = max(1, batch_size or embedder.batch_size or 64)
        self.concurrency = max(1, int(concurrency or embedder.concurrency or 1))
        self.store_text = store_text
        self.on_progress = on_progress
        self.dim: int | None = store.dim if store else None
        from embctl.vectors.naming import KeyMaker

        self._key = store.key if store else KeyMaker("no-cache")
        self._pool: ThreadPoolExecutor | None = None
        self._committer: Committer | None = None  # started by the first job with misses
        self._planned: dict[bytes, Job] = {}  # keys a started, unfinished job will compute
        self._error: BaseException | None = None  # the first failed batch's, in any thread
        self._warned = False
        self._files_checked = False  # the model's cache blobs, against their hashes
        self.damaged: set[bytes] = set()  # keys whose cached row failed its checksum: misses

    def key(self, data: bytes) -> bytes:
        """The cache key of an adapter's ``key_bytes``, in this namespace."""
        return self._key(data)

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

    def flush(self) -> None:
        """Wait until the vectors computed so far are committed to the cache (a caller that
        hands them on and may be killed next: a Ray actor).  A failed commit disables the
        cache, as at the end of a window."""
        if self._committer is not None:
            self._committer.flush()
            self._check_commits()

    def _check_commits(self) -> None:
        """A failed commit (the committer's error) disables the cache, with one warning."""
        if self._committer is not None and self._committer.error is not None:
            self._disable_cache(self._committer.error)

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
        self.damaged |= self.store.take_damaged()  # misses: computed, and rewritten by the commit
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

    # -- planning --------------------------------------------------------------------------

    def plan(self, items: Sequence[Any]) -> Job:
        """Key, dedupe and look up one window's inputs and cut its misses into batches.
        Nothing is claimed, started or sent: :meth:`start` runs the plan, the dry run counts
        it."""
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
        job.batches = self._batches(job)
        return job

    def claim(self, job: Job) -> None:
        """The job computes its misses: later plans borrow them until it is finished."""
        for key in job.misses:
            self._planned[key] = job

    def _batches(self, job: Job) -> list[list[bytes]]:
        """The misses, longest first, cut into calls: by tokens when the backend counts
        them (``token_lengths``: each call pads to its longest), else by characters."""
        misses = job.misses
        lengths = self.embedder.token_lengths
        if lengths is not None and misses:
            keys = list(misses)
            counts = dict(zip(keys, lengths([self.adapter.payload(misses[k]) for k in keys]),
                              strict=True))
            job.tokens = sum(counts.values())
            order = sorted(keys, key=lambda k: -counts[k])
            ranges = split_padded([counts[k] for k in order], self.batch_size,
                                  self.embedder.call_cost or 0, self.embedder.padded_budget)
            return [order[a:b] for a, b in ranges]
        size = self.adapter.size
        order = sorted(misses, key=lambda k: -size(misses[k]))
        budget = self.embedder.max_batch_tokens
        count = self.embedder.count_tokens
        if budget and count is not None:
            payload = self.adapter.payload
            ranges = split(order, self.batch_size, budget, lambda k: count(payload(misses[k])))
        elif self.embedder.call_cost:
            size = self.adapter.size
            ranges = split_padded([size(misses[k]) for k in order], self.batch_size,
                                  self.embedder.call_cost)
        else:
            ranges = split(order, self.batch_size)
        return [order[a:b] for a, b in ranges]

    # -- running ---------------------------------------------------------------------------

    def vectors(self, items: Sequence[Any]) -> tuple[bytes, int, int, int]:
        """-> (float32 LE matrix bytes in input order, hits, computed, duplicates)."""
        return self.finish(self.start(items))

    def start(self, items: Sequence[Any]) -> Job:
        """Plan ``items`` and, with ``concurrency`` > 1, start embedding the misses now, so
        that the caller can read and start the next window while these are in flight.
        Finish jobs in the order they were started."""
        job = self.plan(items)
        if job.misses and not self._files_checked:  # before the model computes anything
            from embctl.vectors.guard import check_model_files

            check_model_files(self.embedder)
            self._files_checked = True
        self.claim(job)
        touched = self.store.take_stale() if self.store is not None else []
        if touched:
            self._commit([], touched)
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
            self._check_commits()
            for key, owner in job.borrowed.items():
                job.vecs[key] = owner.vecs[key]
        finally:
            for key in job.misses:
                if self._planned.get(key) is job:
                    del self._planned[key]
        return b"".join(job.vecs[k] for k in job.keys), job.hits, len(job.misses), \
            job.duplicates

    def _run_batch(self, batch: list[bytes], misses: dict[bytes, Any]) -> list[memoryview]:
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
        self.embedder.cancel()

    def _embed(self, payloads: list[Any]) -> memoryview:
        import numpy as np

        from embctl.vectors.guard import check_finite

        vectors = np.asarray(self.embedder.embed(payloads), dtype="<f4")
        if vectors.ndim != 2 or vectors.shape[0] != len(payloads):
            raise EmbctlError(f"the backend returned shape {vectors.shape} for "
                              f"{plural(len(payloads), 'input')}")
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            raise EmbctlError(f"the backend returned {vectors.shape[1]}-dim vectors; "
                              f"the cache holds {self.dim}-dim ones")
        check_finite(self.embedder, vectors)  # NaN or inf: never written, never cached
        # The array's own memory, as bytes (no copy): backends return a new array per call.
        return memoryview(np.ascontiguousarray(vectors)).cast("B")

    # -- the cache -------------------------------------------------------------------------

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

    def embed_matrix(self, items: Sequence[Any]) -> np.ndarray:
        """The Python API's entry: a float32 (n, dim) array."""
        import numpy as np

        blob, *_ = self.vectors(items)
        dim = self.dim or self.embedder.dim
        return np.frombuffer(blob, dtype="<f4").reshape(len(items), dim).astype(np.float32)
