"""Saving what can still be read from a damaged vector cache file (``verify --repair``).

SQLite refuses a file whose header counts more pages than the file holds (a truncated file:
"database disk image is malformed") unless ``writable_schema`` is on; with it, the pages that
are there can be read.  The rows are read in rowid order until the first unreadable page, then
each remaining rowid is looked up on its own (a lookup only fails when its own path through
the b-tree is damaged), up to the highest rowid the table or its indexes still know.  What
was read goes into a new file (fresh indexes, the old ``meta``, a true count), which replaces
the damaged one; a file whose ``meta`` (the namespace) or rows cannot be read at all is
dropped.  Nothing is invented: a vector is saved only when its row was read whole.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from embctl.vectors import store

Row = tuple[bytes, bytes, "str | None", int]
_INDEXES = ("sqlite_autoindex_vectors_1", "vectors_last_used")


@dataclass
class Salvage:
    saved: int = 0  # vectors written to the new file
    expected: int | None = None  # what the damaged file's meta said it held
    dropped: bool = False  # the file was removed: nothing could be read
    reason: str = ""

    def describe(self) -> str:
        if self.dropped:
            return f"dropped the file: nothing could be read ({self.reason})"
        if self.expected is None:
            return (f"saved {self.saved:,} vectors into a new file; how many could not be read "
                    "is unknown (its count was unreadable)")
        lost = max(0, self.expected - self.saved)
        return (f"saved {self.saved:,} of {self.expected:,} vectors into a new file; "
                f"{lost:,} could not be read (the next embed computes them again)")


def _open(path: Path) -> sqlite3.Connection:
    """A read-only connection that tolerates a short file; its WAL is read when present."""
    last: sqlite3.Error | None = None
    for query in ("mode=ro", "immutable=1"):  # immutable: no -shm needed, the WAL is ignored
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?{query}", uri=True,
                               isolation_level=None)
        try:
            conn.execute("PRAGMA writable_schema = ON")  # accept a header counting lost pages
            conn.execute("SELECT name, value FROM meta").fetchall()
            return conn
        except sqlite3.Error as exc:
            last = exc
            conn.close()
    raise last if last is not None else sqlite3.DatabaseError("unreadable")


def _known_max_rowid(conn: sqlite3.Connection) -> int:
    best = 0
    for sql in ["SELECT max(rowid) FROM vectors"] + [
            f"SELECT max(rowid) FROM vectors INDEXED BY {name}" for name in _INDEXES]:
        with contextlib.suppress(sqlite3.Error):
            best = max(best, conn.execute(sql).fetchone()[0] or 0)
    return best


def _rows(conn: sqlite3.Connection) -> Iterator[Row]:
    """Every readable row: a scan in rowid order, then one lookup a rowid past the damage."""
    last = 0
    try:
        for rowid, key, vec, text, used in conn.execute(
                "SELECT rowid, key, vec, text, last_used FROM vectors ORDER BY rowid"):
            last = rowid
            yield key, vec, text, used
        return
    except sqlite3.Error:
        pass
    for rowid in range(last + 1, _known_max_rowid(conn) + 1):
        try:
            row = conn.execute("SELECT key, vec, text, last_used FROM vectors WHERE rowid = ?",
                               (rowid,)).fetchone()
        except sqlite3.Error:
            continue
        if row is not None:
            yield row


def _write(target: Path, meta: dict[str, str], rows: list[Row]) -> int:
    """A new cache file of ``rows`` with the old meta and a true count; -> vectors written."""
    dim = int(meta["dim"]) if meta.get("dim", "").isdigit() else len(rows[0][1]) // 4
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {store.page_size_for(dim)}")
        conn.execute("BEGIN")
        store._create(conn)
        conn.executemany("INSERT OR IGNORE INTO vectors (key, vec, text, last_used) "
                         "VALUES (?, ?, ?, ?)", rows)
        (count,) = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
        meta = {**meta, "count": str(count), "dim": str(dim), "last_used": str(time.time())}
        conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
    finally:
        conn.close()
    return count


def salvage(path: Path) -> Salvage:
    """Replace the damaged cache at ``path`` by a file of the rows that can be read, or
    remove it when nothing can be (see the module's docstring).  Raises OSError or
    sqlite3.Error only when the new file cannot be written (the damaged one is then kept)."""
    result = Salvage()
    meta: dict[str, str] = {}
    rows: list[Row] = []
    try:
        conn = _open(path)
        try:
            meta = store.read_meta(conn)
            if "namespace" in meta and "ns_id" in meta:
                rows = list(_rows(conn))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        result.reason = str(exc)
    with contextlib.suppress(ValueError):
        result.expected = int(meta.get("count", ""))
    if not rows:
        result.dropped = True
        result.reason = result.reason or ("no namespace in its meta table" if "ns_id" not in meta
                                          else "no vector could be read")
        store.remove_files(path)
        return result
    temp = path.with_name(path.name + ".salvage")
    temp.unlink(missing_ok=True)
    try:
        result.saved = _write(temp, meta, rows)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    for suffix in ("-wal", "-shm"):  # the old file's: they must not meet the new one
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
    os.replace(temp, path)
    return result
