"""The vector cache: one SQLite file per namespace under ``vectors_dir()``, and
:class:`VectorStore`, the handle that reads and writes one of them.

A namespace's file name and the key of each vector are made in embctl/vectors/naming.py;
vectors are little-endian float32 blobs.  Inputs (texts) are stored only when asked
(``--store-text``).

Concurrency and crashes: WAL mode, ``synchronous=NORMAL`` (a committed transaction survives a
killed process), a long ``busy_timeout``, and every write in a ``BEGIN IMMEDIATE`` transaction,
so several processes can fill one cache at once without "database is locked" failures.  Reads
run in autocommit mode and never upgrade to writes (the upgrade is what fails under WAL).

Every row carries a checksum of its key and vector, checked whenever the row is read: a
damaged row is a miss, and a write replaces it (embctl/vectors/rowcheck.py).

Only the standard library is imported here: ``embctl ls`` reads these files too.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from embctl.vectors.evict import _delete
from embctl.vectors.meta import read_meta
from embctl.vectors.naming import KeyMaker, canonical, namespace_id, store_path
from embctl.vectors.rowcheck import SCHEMA_VERSION, migrate, row_ok, row_sum
from embctl.vectors.sqlite import _ReadTxn, _Txn, connect, page_size_for

#: last_used is refreshed only when older than this, so warm runs write (almost) nothing.
TOUCH_GRANULARITY_S = 3600
_CHUNK = 500  # parameters per IN (...) query; SQLite's limit is far higher

# A rowid table, not WITHOUT ROWID: rows are 1.5-6 kB vectors, and SQLite advises WITHOUT
# ROWID only for rows well under a twentieth of a page (inserts measured 2.2x faster this way).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    key BLOB PRIMARY KEY,
    vec BLOB NOT NULL,
    text TEXT,
    last_used INTEGER NOT NULL,
    sum BLOB
);
CREATE INDEX IF NOT EXISTS vectors_last_used ON vectors (last_used);
"""


class VectorStore:
    """One namespace's cache file.  Not thread-safe: use it from one thread.

    ``conn`` is None while the file does not exist: a store opened with ``create=False``
    creates its file with the first write, so a run that commits nothing leaves no file.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection | None, namespace: dict[str, Any],
                 ns_id: str, *, ref: str | None = None, page_size: int = 8192) -> None:
        self.path = path
        self.conn = conn
        self.namespace = namespace
        self.ns_id = ns_id
        self.ref = ref
        self.page_size = page_size
        self.key = KeyMaker(ns_id)
        self.dim: int | None = None
        self.stale: list[bytes] = []
        self.damaged: set[bytes] = set()  # keys read whose checksum failed: see take_damaged
        self.used = False  # any hit or write: refresh the file's last_used on close
        self.stores_text = False  # mark the file as holding texts with the next write
        if conn is not None:
            self._read_dim(conn)

    def _read_dim(self, conn: sqlite3.Connection) -> None:
        meta = read_meta(conn)
        if meta.get("dim"):
            self.dim = int(meta["dim"])

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, namespace: dict[str, Any], *, ref: str | None = None,
             root: Path | None = None, dim: int | None = None,
             create: bool = True) -> VectorStore:
        """Open the cache of ``namespace``; ``dim``, when known, sizes a new file's pages.
        ``create=False``: a missing file is created by the first write, not now (its
        directory is checked now).  Raises sqlite3.Error/OSError."""
        path = store_path(namespace, root)
        store = cls(path, None, namespace, namespace_id(namespace), ref=ref,
                    page_size=page_size_for(dim))
        if create or path.exists():
            store._attach(create=True)
        else:
            _check_dir(path.parent)
        return store

    def sibling(self) -> VectorStore:
        """Another handle on the same file, with a connection of its own made on first use
        (the committer thread's)."""
        other = VectorStore(self.path, None, self.namespace, self.ns_id, ref=self.ref,
                            page_size=self.page_size)
        other.dim, other.stores_text = self.dim, self.stores_text
        return other

    def _attach(self, *, create: bool) -> bool:
        """Connect to the file, creating it (and its schema) with ``create``; without, False
        when it is missing or has no schema yet (another process is creating it)."""
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = connect(self.path, page_size=self.page_size, create=create)
        except sqlite3.OperationalError:
            if create or self.path.exists():
                raise
            return False
        try:
            if not _has_schema(conn):
                if not create:
                    conn.close()
                    return False
                with _Txn(conn):
                    _create(conn)
                    now = str(time.time())
                    rows = {"schema": str(SCHEMA_VERSION), "namespace": canonical(self.namespace),
                            "ns_id": self.ns_id, "created": now, "last_used": now, "count": "0",
                            "ref": self.ref or ""}
                    conn.executemany("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                                     rows.items())
            else:
                if _schema(conn) > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"{self.path.name}: written by a newer embctl (schema {_schema(conn)})")
                if _schema(conn) < SCHEMA_VERSION:
                    self._migrate(conn)
            self._read_dim(conn)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return True

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Give an older file's rows their checksums (once: another process may have)."""
        with _Txn(conn):
            if _schema(conn) < SCHEMA_VERSION:
                dim = read_meta(conn).get("dim", "")
                migrate(conn, int(dim) if dim.isdigit() else None)

    def _reader(self) -> sqlite3.Connection | None:
        """The connection for reads; None while the file does not exist (looked for again on
        each call: another process may create it)."""
        if self.conn is None and self.path.exists():
            self._attach(create=False)
        return self.conn

    def _writer(self) -> sqlite3.Connection:
        if self.conn is None:
            self._attach(create=True)
        assert self.conn is not None
        return self.conn

    def close(self) -> None:
        if self.conn is None:
            return
        try:
            if self.used:
                self.used = False
                with _Txn(self.conn) as conn:
                    self._touch(conn, self.take_stale(), int(time.time()))
            self.conn.close()
        except sqlite3.Error:
            pass

    # -- reading ---------------------------------------------------------------------------

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The stored vectors (raw float32 LE blobs) for those keys that are present and
        pass their checksum; the keys of damaged rows are kept for :meth:`take_damaged`."""
        found: dict[bytes, bytes] = {}
        conn = self._reader()
        if conn is None:
            return found
        stale = int(time.time()) - TOUCH_GRANULARITY_S
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, vec, last_used, stored in conn.execute(
                    f"SELECT key, vec, last_used, sum FROM vectors WHERE key IN ({marks})",
                    chunk):
                if not row_ok(key, vec, stored):
                    self.damaged.add(key)
                    continue
                found[key] = vec
                if last_used < stale:
                    self.stale.append(key)
        self.used = self.used or bool(found)
        return found

    def take_damaged(self) -> set[bytes]:
        """Keys read since the last call whose row failed its checksum (a miss: the next
        :meth:`put_many` of the key replaces the row)."""
        damaged, self.damaged = self.damaged, set()
        return damaged

    def take_stale(self) -> list[bytes]:
        """Keys read since the last call whose last_used is over an hour old: the only ones
        worth a write to keep LRU order (warm runs then write nothing)."""
        stale, self.stale = self.stale, []
        return stale

    def iter_rows(self, batch: int = 1000) -> Iterator[list[tuple[bytes, bytes, str | None]]]:
        """All (key, vec, text) rows that pass their checksum, in key order, in lists of at
        most ``batch`` (damaged rows are left out and kept for :meth:`take_damaged`).  Call
        inside :meth:`snapshot` for a consistent view."""
        conn = self._reader()
        if conn is None:
            return
        cur = conn.execute("SELECT key, vec, text, sum FROM vectors ORDER BY key")
        while rows := cur.fetchmany(batch):
            good = [(k, v, t) for k, v, t, s in rows if row_ok(k, v, s)]
            self.damaged.update(r[0] for r in rows if not row_ok(r[0], r[1], r[3]))
            if good:
                yield good

    def snapshot(self) -> _ReadTxn:
        return _ReadTxn(self._writer())

    def count(self) -> int:
        conn = self._reader()
        if conn is None:
            return 0
        row = conn.execute("SELECT value FROM meta WHERE name='count'").fetchone()
        return int(row[0]) if row else 0

    # -- writing ---------------------------------------------------------------------------

    def put_many(self, rows: Iterable[tuple[bytes, bytes, str | None]],
                 touched: Sequence[bytes] = ()) -> int:
        """Insert (key, vec, text) rows and refresh last_used of ``touched`` keys, in one
        committed transaction.  Returns the number of new rows.

        An existing key keeps its vector (same namespace and input means the same output),
        unless its row fails its checksum: a damaged row is replaced.
        """
        rows = list(rows)
        now = int(time.time())
        self.used = True
        with _Txn(self._writer()) as conn:
            inserted = 0
            if rows:
                _delete(conn, _damaged_among(conn, [k for k, _, _ in rows]))
                before = conn.total_changes
                conn.executemany(
                    "INSERT INTO vectors (key, vec, text, last_used, sum) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(key) DO NOTHING",
                    [(k, v, t, now, row_sum(k, v)) for k, v, t in rows])
                inserted = conn.total_changes - before
                if self.dim is None:
                    self.dim = len(rows[0][1]) // 4
                    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('dim', ?)",
                                 (str(self.dim),))
                if inserted:
                    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + ? "
                                 "WHERE name = 'count'", (inserted,))
                if self.stores_text:
                    conn.execute("INSERT OR REPLACE INTO meta (name, value) "
                                 "VALUES ('stores_text', '1')")
                    self.stores_text = False  # marked once
            self._touch(conn, touched, now)
        return inserted

    def touch(self, keys: Sequence[bytes]) -> None:
        """Mark keys as used now (cheap: only rows not touched within the last hour)."""
        if not keys:
            return
        with _Txn(self._writer()) as conn:
            self._touch(conn, keys, int(time.time()))

    def _touch(self, conn: sqlite3.Connection, keys: Sequence[bytes], now: int) -> None:
        stale = now - TOUCH_GRANULARITY_S
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            conn.execute(f"UPDATE vectors SET last_used = ? WHERE last_used < ? AND key IN "
                         f"({marks})", (now, stale, *chunk))
        row = conn.execute("SELECT value FROM meta WHERE name='last_used'").fetchone()
        if not row or float(row[0]) < now - 60:
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('last_used', ?)",
                         (str(time.time()),))

    def mark_stores_text(self) -> None:
        """Mark the file as holding texts, with the next write of rows (a run that writes
        none leaves the file as it is, or absent)."""
        self.stores_text = True

    def delete_keys(self, keys: Sequence[bytes]) -> int:
        with _Txn(self._writer()) as conn:
            return _delete(conn, keys)


def _check_dir(folder: Path) -> None:
    """Fail now (OSError) when the cache file could not be created in ``folder`` later."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{probe} is not writable")


def _has_schema(conn: sqlite3.Connection) -> bool:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"meta", "vectors"} <= names:
        return False
    return conn.execute("SELECT 1 FROM meta WHERE name='ns_id'").fetchone() is not None


def _schema(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
    return int(row[0]) if row and str(row[0]).isdigit() else 1


def _damaged_among(conn: sqlite3.Connection, keys: Sequence[bytes]) -> list[bytes]:
    """Those of ``keys`` whose stored row fails its checksum."""
    bad: list[bytes] = []
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i:i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        bad += [key for key, vec, stored in conn.execute(
            f"SELECT key, vec, sum FROM vectors WHERE key IN ({marks})", chunk)
            if not row_ok(key, vec, stored)]
    return bad


def _create(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def blob_from_floats(values: Iterable[float]) -> bytes:
    """Pack floats as a little-endian float32 blob without numpy (tests, fallbacks)."""
    import array

    arr = array.array("f", values)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()
