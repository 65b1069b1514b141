"""The vector cache: one SQLite file per namespace under ``vectors_dir()``.

A *namespace* is everything that determines a vector besides the input itself: backend, repo
id, the resolved commit hash, and every option that changes the output (normalize, prefix,
truncated dims...).  Its canonical JSON is hashed into the file name, so a new model revision
or a new option writes to a new file and never serves stale vectors.

Within a file, the key of a vector is ``sha256(namespace id, 0x00, input bytes)``; vectors are
little-endian float32 blobs.  Inputs (texts) are stored only when asked (``--store-text``).

Concurrency and crashes: WAL mode, ``synchronous=NORMAL`` (a committed transaction survives a
killed process), a long ``busy_timeout``, and every write in a ``BEGIN IMMEDIATE`` transaction,
so several processes can fill one cache at once without "database is locked" failures.  Reads
run in autocommit mode and never upgrade to writes (the upgrade is what fails under WAL).

Only the standard library is imported here: ``embctl ls`` reads these files too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from embctl.paths import vectors_dir
from embctl.vectors.meta import StoreInfo, info_from_meta, read_meta  # noqa: F401  (re-exported)
from embctl.vectors.sqlite import (  # noqa: F401  (re-exported: store.connect...)
    BUSY_TIMEOUT_MS,
    _ReadTxn,
    _retry,
    _Txn,
    connect,
    page_size_for,
)

SCHEMA_VERSION = 1
SUFFIX = ".sqlite"
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
    last_used INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_last_used ON vectors (last_used);
"""


def canonical(namespace: dict[str, Any]) -> str:
    return json.dumps(namespace, sort_keys=True, separators=(",", ":"), default=str)


def namespace_id(namespace: dict[str, Any]) -> str:
    """A short stable id for a namespace: the file name of its cache."""
    return hashlib.sha256(canonical(namespace).encode()).hexdigest()[:32]


def store_path(namespace: dict[str, Any], root: Path | None = None) -> Path:
    return (root or vectors_dir()) / f"{namespace_id(namespace)}{SUFFIX}"


class KeyMaker:
    """Computes item keys: ``sha256(namespace id || 0x00 || input)``."""

    def __init__(self, ns_id: str) -> None:
        self._prefix = hashlib.sha256(ns_id.encode() + b"\x00")

    def __call__(self, data: bytes) -> bytes:
        h = self._prefix.copy()
        h.update(data)
        return h.digest()


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
                schema = conn.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
                if schema and int(schema[0]) > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"{self.path.name}: written by a newer embctl (schema {schema[0]})")
            self._read_dim(conn)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return True

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
        """The stored vectors (raw float32 LE blobs) for those keys that are present."""
        found: dict[bytes, bytes] = {}
        conn = self._reader()
        if conn is None:
            return found
        stale = int(time.time()) - TOUCH_GRANULARITY_S
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, vec, last_used in conn.execute(
                    f"SELECT key, vec, last_used FROM vectors WHERE key IN ({marks})", chunk):
                found[key] = vec
                if last_used < stale:
                    self.stale.append(key)
        self.used = self.used or bool(found)
        return found

    def take_stale(self) -> list[bytes]:
        """Keys read since the last call whose last_used is over an hour old: the only ones
        worth a write to keep LRU order (warm runs then write nothing)."""
        stale, self.stale = self.stale, []
        return stale

    def iter_rows(self, batch: int = 1000) -> Iterator[list[tuple[bytes, bytes, str | None]]]:
        """All (key, vec, text) rows in key order, in lists of ``batch``.  Call inside
        :meth:`snapshot` for a consistent view."""
        conn = self._reader()
        if conn is None:
            return
        cur = conn.execute("SELECT key, vec, text FROM vectors ORDER BY key")
        while rows := cur.fetchmany(batch):
            yield rows

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

        An existing key keeps its vector: same namespace and input means the same output.
        """
        rows = list(rows)
        now = int(time.time())
        self.used = True
        with _Txn(self._writer()) as conn:
            inserted = 0
            if rows:
                before = conn.total_changes
                conn.executemany(
                    "INSERT INTO vectors (key, vec, text, last_used) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO NOTHING",
                    [(k, v, t, now) for k, v, t in rows])
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


def _create(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _delete(conn: sqlite3.Connection, keys: Sequence[bytes]) -> int:
    removed = 0
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i:i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        removed += conn.execute(f"DELETE FROM vectors WHERE key IN ({marks})", chunk).rowcount
    if removed:
        conn.execute("UPDATE meta SET value = MAX(0, CAST(value AS INTEGER) - ?) "
                     "WHERE name = 'count'", (removed,))
    return removed


# -- files, sizes and eviction -------------------------------------------------------------


def store_files(root: Path | None = None) -> list[Path]:
    folder = root or vectors_dir()
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX) and p.is_file())
    except OSError:
        return []


def file_size(path: Path) -> int:
    """The cache file plus its WAL and shared-memory files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(f"{path}{suffix}").st_size
        except OSError:
            pass
    return total


def remove_files(path: Path) -> int:
    """Delete a cache file with its -wal and -shm; return the bytes freed."""
    freed = file_size(path)
    for suffix in ("-wal", "-shm", ""):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
    return freed


def _used_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return (pages - free) * size


def enforce_cap(max_bytes: int, root: Path | None = None) -> tuple[int, int]:
    """Evict least recently used vectors, across every namespace, until the caches' live data
    fits in ``max_bytes``.  Returns (vectors evicted, bytes freed (estimated)).

    Rows are grouped by their last_used second, so finding the global cut-off needs one
    GROUP BY per file, not a sort of every row.  Freed pages are reused by later inserts
    (files do not shrink without VACUUM; ``embctl rm`` reclaims whole namespaces).
    """
    conns: dict[Path, sqlite3.Connection] = {}
    try:
        used = 0
        buckets: list[tuple[int, int, int, Path]] = []  # (last_used, rows, bytes, file)
        for path in store_files(root):
            try:
                conn = connect(path)
                conns[path] = conn
                file_used = _used_bytes(conn)
                used += file_used
                groups = conn.execute("SELECT last_used, COUNT(*) FROM vectors "
                                      "GROUP BY last_used").fetchall()
                per_row = file_used / max(1, sum(n for _, n in groups))  # pages, not payload
                for last_used, rows in groups:
                    buckets.append((last_used, rows, int(rows * per_row), path))
            except sqlite3.Error:
                continue
        excess = used - max_bytes
        evicted = freed = 0
        for last_used, rows, size, path in sorted(buckets, key=lambda b: b[0]):
            if excess <= 0:
                break
            conn = conns[path]
            take = rows if size <= excess else max(1, -(-rows * excess // size))
            with _Txn(conn):
                keys = [r[0] for r in conn.execute(
                    "SELECT key FROM vectors WHERE last_used = ? LIMIT ?", (last_used, take))]
                removed = _delete(conn, keys)
            part = size * removed // max(rows, 1)
            evicted += removed
            freed += part
            excess -= part
        return evicted, freed
    finally:
        for conn in conns.values():
            conn.close()


def blob_from_floats(values: Iterable[float]) -> bytes:
    """Pack floats as a little-endian float32 blob without numpy (tests, fallbacks)."""
    import array

    arr = array.array("f", values)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()
