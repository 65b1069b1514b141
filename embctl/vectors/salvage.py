"""Saving what can still be read from a damaged vector cache file (``verify --repair``).

SQLite refuses a file whose header counts more pages than the file holds (a truncated file:
"database disk image is malformed") unless ``writable_schema`` is on; with it, the pages that
are there can be read.  The rows are read in rowid order until the first unreadable page, then
each remaining rowid is looked up on its own (a lookup only fails when its own path through
the b-tree is damaged), up to the highest rowid the table or its indexes still know.  What
was read goes into a new file (fresh indexes, the old ``meta``, a true count), which replaces
the damaged one; a file whose ``meta`` (the namespace) or rows cannot be read at all is
dropped.  Nothing is invented: a vector is saved only when its row was read whole and passes
its checksum (embctl/vectors/rowcheck.py): SQLite reads the bytes past a cut as zeros, so a
row that straddles it comes back at full length, its tail zeroed; such a row is damaged, and
dropped.  :func:`survey` reads the same way without writing, for ``verify`` without --repair.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from embctl.console import plural
from embctl.vectors import files, rowcheck, store
from embctl.vectors.meta import read_meta
from embctl.vectors.sqlite import page_size_for

Row = tuple[bytes, bytes, "str | None", int, "bytes | None"]  # key, vec, text, last_used, sum
_INDEXES = ("sqlite_autoindex_vectors_1", "vectors_last_used")


@dataclass
class Salvage:
    saved: int = 0  # vectors written to the new file
    damaged: int = 0  # rows read whole that failed their checksum: dropped
    expected: int | None = None  # what the damaged file's meta said it held
    dropped: bool = False  # the file was removed: nothing could be read
    reason: str = ""

    def describe(self) -> str:
        if self.dropped:
            return f"dropped the file: nothing could be read ({self.reason})"
        if self.expected is None:
            return (f"saved {plural(self.saved, 'vector')} into a new file; how many could not "
                    "be read is unknown (its count was unreadable)")
        lost = max(0, self.expected - self.saved)
        return (f"saved {self.saved:,} of {plural(self.expected, 'vector')} into a new file; "
                f"{lost:,} could not be read{self._damaged()} (the next embed computes them "
                "again)")

    def _damaged(self) -> str:
        if not self.damaged:
            return ""
        return (f", {self.damaged:,} of them damaged (read back with a wrong checksum) and "
                "dropped")


@dataclass
class Survey:
    """What a damaged file still holds, read without writing (``verify`` without --repair)."""

    good: int  # rows read whole that pass their checksum
    damaged: int  # rows read whole that fail it
    expected: int | None  # what the file's meta says it holds

    def describe(self) -> str:
        readable = (f"{self.good:,} of {plural(self.expected, 'vector')}" if self.expected
                    is not None else plural(self.good, "vector"))
        return (f"{readable} can be read whole, {plural(self.damaged, 'damaged row')} "
                "(read back with a wrong checksum): run with --repair to keep only the good ones")


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
    cols = "key, vec, text, last_used, " + ("sum" if rowcheck.has_sums(conn) else "NULL")
    try:
        for rowid, *row in conn.execute(f"SELECT rowid, {cols} FROM vectors ORDER BY rowid"):
            last = rowid
            yield tuple(row)  # type: ignore[misc]
        return
    except sqlite3.Error:
        pass
    for rowid in range(last + 1, _known_max_rowid(conn) + 1):
        try:
            row = conn.execute(f"SELECT {cols} FROM vectors WHERE rowid = ?",
                               (rowid,)).fetchone()
        except sqlite3.Error:
            continue
        if row is not None:
            yield row


def _read(path: Path) -> tuple[dict[str, str], list[Row], int, str]:
    """-> (the file's meta, its good rows (each with its checksum), damaged rows, why
    nothing could be read).  A schema-1 file's rows get their checksums here when they pass
    :func:`rowcheck.legacy_ok`."""
    meta: dict[str, str] = {}
    good: list[Row] = []
    damaged = 0
    try:
        conn = _open(path)
        try:
            meta = read_meta(conn)
            if "namespace" not in meta or "ns_id" not in meta:
                return meta, good, damaged, ""
            sums = rowcheck.has_sums(conn)
            dim = int(meta["dim"]) if meta.get("dim", "").isdigit() else None
            for key, vec, text, used, stored in _rows(conn):
                if rowcheck.check((key, vec, used, stored), dim, sums):
                    good.append((key, vec, text, used, stored or rowcheck.row_sum(key, vec)))
                else:
                    damaged += 1
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return meta, good, damaged, str(exc)
    return meta, good, damaged, ""


def survey(path: Path) -> Survey:
    """Count what :func:`salvage` would keep and drop as damaged; writes nothing (a file
    that cannot be opened at all: nothing can be read whole)."""
    meta, good, damaged, _ = _read(path)
    expected = int(meta["count"]) if meta.get("count", "").isdigit() else None
    return Survey(len(good), damaged, expected)


def _write(target: Path, meta: dict[str, str], rows: list[Row]) -> int:
    """A new cache file of ``rows`` with the old meta and a true count; -> vectors written."""
    dim = int(meta["dim"]) if meta.get("dim", "").isdigit() else len(rows[0][1]) // 4
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {page_size_for(dim)}")
        conn.execute("BEGIN")
        store._create(conn)
        conn.executemany("INSERT OR IGNORE INTO vectors (key, vec, text, last_used, sum) "
                         "VALUES (?, ?, ?, ?, ?)", rows)
        (count,) = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
        meta = {**meta, "count": str(count), "dim": str(dim), "last_used": str(time.time()),
                "schema": str(rowcheck.SCHEMA_VERSION)}
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
    meta, rows, result.damaged, result.reason = _read(path)
    with contextlib.suppress(ValueError):
        result.expected = int(meta.get("count", ""))
    if not rows:
        result.dropped = True
        result.reason = result.reason or ("no namespace in its meta table" if "ns_id" not in meta
                                          else "no vector could be read whole")
        files.remove_files(path)
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
