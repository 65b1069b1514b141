"""Committing embedded batches to the vector cache on a thread of their own.

Writing a batch to SQLite costs about as much as receiving it from an API (10,000 vectors of
1,536 dimensions are 61 MB), so the embed pipeline hands each batch to a :class:`Committer`
and goes on with the next response: one thread with its own connection, committing the
batches in the order given, one transaction each (sqlite3 releases the GIL while it writes).

A batch's vectors stay readable in memory until its transaction has committed, and lookups
check them before the file: a vector already paid for is never asked for again, even while
its commit is still queued.  (A batch leaves memory only after its commit, so a key missing
from memory at lookup time is either in the file or was never computed.)

A failed commit is recorded, the batches behind it are dropped, and :attr:`error` tells the
pipeline, which then goes on without the cache.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from embctl.vectors.store import VectorStore

Row = tuple[bytes, bytes, "str | None"]


class Committer:
    def __init__(self, store: VectorStore) -> None:
        """Commit into ``store``'s file through a connection of its own, opened (and the file
        created, when missing) by the first commit: a run that commits nothing leaves no file."""
        self.store = store.sibling()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._pending: dict[bytes, bytes] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embctl-commit")

    def submit(self, rows: list[Row], touched: Sequence[bytes] = ()) -> None:
        """Queue one transaction: insert ``rows``, refresh last_used of ``touched``."""
        with self._lock:
            for key, vec, _ in rows:
                self._pending[key] = vec
        try:
            self._pool.submit(self._commit, rows, touched)
        except RuntimeError:  # closed (the cache was just disabled): the batch is not kept
            with self._lock:
                for key, _, _ in rows:
                    self._pending.pop(key, None)

    def pending(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The vectors of ``keys`` that are queued but not committed yet."""
        with self._lock:
            if not self._pending:
                return {}
            return {k: self._pending[k] for k in keys if k in self._pending}

    def _commit(self, rows: list[Row], touched: Sequence[bytes]) -> None:
        try:
            if self.error is None:
                self.store.put_many(rows, touched)
        except (sqlite3.Error, OSError) as exc:
            self.error = exc
        finally:
            with self._lock:
                for key, _, _ in rows:
                    self._pending.pop(key, None)

    def flush(self) -> None:
        """Wait until every transaction queued so far has committed (or failed)."""
        try:
            self._pool.submit(lambda: None).result()
        except RuntimeError:  # closed: nothing is queued
            pass

    def close(self) -> None:
        """Wait for the queued commits, then close the connection."""
        self._pool.shutdown(wait=True)
        self.store.close()
