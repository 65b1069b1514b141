"""SQLite plumbing shared by the vector cache's readers and writers: connections with the
pragmas every user needs, retried WAL setup, and write/read transactions.

Only the standard library is imported here: ``embctl ls`` reads these files too.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

BUSY_TIMEOUT_MS = 60_000


def page_size_for(dim: int | None) -> int:
    """The page size for a new file of ``dim``-dimension vectors: the smallest that wastes
    under a tenth of each page.  A row is stored whole in one table page, so 8 KiB pages hold
    five 384-dim rows, but only one 1,536-dim row (6 KiB, a quarter of the page wasted) where
    32 KiB pages hold five: a 20% smaller file and about 40% less CPU to write it.  Bigger
    pages cost reads in random order, hence the smallest that fits."""
    if not dim:
        return 8192
    row = dim * 4 + 48  # the key (32 bytes), the cell's header and pointer
    for size in (8192, 16384, 32768):
        usable = size - 100  # page header and reserve, roughly
        rows = usable // row
        if rows and usable - rows * row < size // 10:
            return size
    return 65536


def connect(path: Path, *, readonly: bool = False, page_size: int = 8192,
            create: bool = True) -> sqlite3.Connection:
    """Open a cache file in autocommit mode with the pragmas every user needs (``page_size``
    applies to a new, empty file only).  ``create=False``: a missing file is an error
    (sqlite3.OperationalError), never created."""
    if readonly or not create:
        mode = "ro" if readonly else "rw"
        uri = f"{Path(path).absolute().as_uri()}?mode={mode}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                               timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            conn.execute(f"PRAGMA page_size = {int(page_size)}")  # see page_size_for()
            _retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _retry(fn, attempts: int = 20):
    """Run fn, retrying on SQLITE_BUSY that busy_timeout does not cover (WAL setup)."""
    delay = 0.01
    for attempt in range(attempts):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    return None


class _Txn:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        _retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            _retry(lambda: self.conn.execute("COMMIT"))
        else:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass


class _ReadTxn:
    """A read transaction: a consistent snapshot of the file under WAL."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN")
        return self.conn

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            pass
