"""Deleting rows from a vector cache file, and evicting the least recently used vectors
across every namespace (``--max-cache``).

Only the standard library is imported here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from embctl.vectors.files import store_files
from embctl.vectors.sqlite import _Txn, connect

_CHUNK = 500  # parameters per IN (...) query; SQLite's limit is far higher


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
