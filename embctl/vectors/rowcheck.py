"""The guard stored with every cached vector: a checksum of its row, checked on every read.

A cache file cut short (a full disk, a bad copy, a crash of the machine) is read by SQLite as
if the missing bytes were zeros: a row whose cell straddles the cut comes back at full length
with its tail zeroed, and SQLite's own checks do not see it.  So each row stores
``sum = sha256(key || vec)[:8]`` in its last column, and a row is served only when
its ``sum`` matches.  A cut zeroes a cell from the cut to its end, so the checksum, stored
last, is the first thing it destroys.  Any other change of the key or the vector (a bad
sector, a tool writing into the file) fails the check too.

Files written before the guard (schema 1) have no ``sum`` column.  The first embctl that
opens one to write adopts its rows in one transaction (:func:`migrate`): a row is given its
checksum when it passes what can still be checked (:func:`legacy_ok`: its length, finite,
non-zero values, and a ``last_used`` that is not zero: ``last_used`` is stored after the
vector, so a cut that reached the vector zeroed it), and is deleted otherwise (the next embed
computes it again).  Readers that do not write (``verify``, ``export``) apply the same test to
such a file's rows.

Only the standard library is imported here: ``embctl ls`` reads these files too.
"""

from __future__ import annotations

import array
import hashlib
import math
import sqlite3
import sys

SCHEMA_VERSION = 2  # 2: the ``sum`` column
SUM_BYTES = 8
_CHUNK = 500


def row_sum(key: bytes, vec: bytes | memoryview) -> bytes:
    """The checksum stored with a row: the first 8 bytes of sha256(key || vector bytes).
    sha256, not blake2b: OpenSSL's runs on the CPU's SHA extensions where there are some
    (measured here: 3.1 us a 384-dim row against blake2b's 4.0; 7 against 15 at 1,536)."""
    h = hashlib.sha256(key)
    h.update(vec)
    return h.digest()[:SUM_BYTES]


def row_ok(key: object, vec: object, stored: object) -> bool:
    """True when the row reads back as written: its checksum matches its key and vector."""
    return (isinstance(key, bytes) and isinstance(vec, bytes) and isinstance(stored, bytes)
            and len(stored) == SUM_BYTES and row_sum(key, vec) == stored)


def legacy_ok(key: object, vec: object, last_used: object, dim: int | None) -> bool:
    """A schema-1 row (no checksum) that shows no sign of damage: a 32-byte key, a vector of
    the file's dimension with finite, not all zero values, and a last_used that is not zero
    (see the module's docstring)."""
    if not (isinstance(key, bytes) and len(key) == 32 and isinstance(vec, bytes) and vec
            and len(vec) % 4 == 0 and isinstance(last_used, int) and last_used > 0):
        return False
    if dim and len(vec) != dim * 4:
        return False
    values = array.array("f", vec)
    if sys.byteorder == "big":
        values.byteswap()
    # float32 values summed as doubles cannot overflow: the sum is finite iff every value is
    return math.isfinite(sum(values)) and any(values)


def has_sums(conn: sqlite3.Connection) -> bool:
    """Whether the file's ``vectors`` table has the ``sum`` column (schema 2 and later)."""
    return any(row[1] == "sum" for row in conn.execute("PRAGMA table_info(vectors)"))


def check(row: tuple, dim: int | None, sums: bool) -> bool:
    """``row`` is (key, vec, last_used, sum) -- ``sum`` absent when not ``sums``."""
    if sums:
        return row_ok(row[0], row[1], row[3])
    return legacy_ok(row[0], row[1], row[2], dim)


def migrate(conn: sqlite3.Connection, dim: int | None) -> tuple[int, int]:
    """Bring a schema-1 file to schema 2 inside the caller's write transaction: add the
    ``sum`` column, give each row that passes :func:`legacy_ok` its checksum and delete the
    others.  -> (rows adopted, rows deleted)."""
    if not has_sums(conn):
        conn.execute("ALTER TABLE vectors ADD COLUMN sum BLOB")
    adopted: list[tuple[bytes, int]] = []
    bad: list[int] = []
    cur = conn.execute("SELECT rowid, key, vec, last_used FROM vectors WHERE sum IS NULL")
    while rows := cur.fetchmany(1000):
        for rowid, key, vec, last_used in rows:
            if legacy_ok(key, vec, last_used, dim):
                adopted.append((row_sum(key, vec), rowid))
            else:
                bad.append(rowid)
    conn.executemany("UPDATE vectors SET sum = ? WHERE rowid = ?", adopted)
    for i in range(0, len(bad), _CHUNK):
        chunk = bad[i:i + _CHUNK]
        conn.execute(f"DELETE FROM vectors WHERE rowid IN ({','.join('?' * len(chunk))})",
                     chunk)
    (count,) = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
    conn.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                     [("count", str(count)), ("schema", str(SCHEMA_VERSION))])
    return len(adopted), len(bad)
