"""Issue #22, case 4: every cached vector is checked before it is served.

A vector cache cut short reads back with zeros where its bytes were cut off: SQLite zero-fills
a page past the end of the file, so a row whose cell straddles the cut comes back at full
length, its tail zeroed.  Each row now carries a checksum of its key and vector, checked on
every read: ``verify`` reports such rows, ``verify --repair`` drops exactly them (and keeps
every row that can be read whole), and ``embed`` treats them as misses, recomputes them,
rewrites them, and says so ("N damaged rows recomputed").

Everything happens for real: ``embctl embed`` with the real all-MiniLM-L6-v2 makes the cache,
the test cuts the SQLite file inside a row's cell (found from the file's own b-tree pages,
read with SQLite's dbstat table and the page format), with the WAL that a killed process
leaves beside it or without one, and overwrites vectors through sqlite3 as another tool
would.  Which rows are intact, damaged or lost is worked out from the file's layout and the
cut, not from embctl.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from support.runner import Embctl

MODEL = "all-MiniLM-L6-v2"
TEXTS = [f"line {i}: a short sentence about topic {i % 5} and item {i * 7}" for i in range(48)]
FIRST = 40  # embedded first (checkpointed into the file); the rest second (in the WAL, or not)


def lines(texts: list[str]) -> str:
    return "".join(t + "\n" for t in texts)


def embed(run: Embctl, texts: list[str]) -> subprocess.CompletedProcess:
    proc = run("embed", MODEL, "--lines", input=lines(texts))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def vectors(stdout: str) -> np.ndarray:
    return np.array([json.loads(line)["embedding"] for line in stdout.splitlines()],
                    dtype=np.float32)


def cache_file(home: Path) -> Path:
    (path,) = sorted((home / "embctl" / "vectors").glob("*.sqlite"))
    return path


def stored(path: Path) -> dict[bytes, bytes]:
    """key -> vector bytes of every row of a (sound) cache file."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, vec FROM vectors"))
    finally:
        conn.close()


def assert_same_vectors(got: np.ndarray, clean: np.ndarray) -> None:
    """Recomputed vectors equal the first computation (batches of other sizes may move the
    last float bits); a damaged vector (a zeroed tail) is far outside this."""
    assert got.shape == clean.shape
    np.testing.assert_allclose(got, clean, rtol=0, atol=1e-5)


# -- where each row lies in the file ---------------------------------------------------------


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    """SQLite's big-endian varint at ``at`` -> (value, bytes used)."""
    value = 0
    for i in range(9):
        byte = buf[at + i]
        if i == 8:
            return (value << 8) | byte, 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i + 1
    raise AssertionError("unreachable")


def wal_pages(wal: bytes) -> dict[int, bytes]:
    """The pages a WAL holds (the latest committed copy of each)."""
    if len(wal) < 32:
        return {}
    page_size = int.from_bytes(wal[8:12], "big")
    pages: dict[int, bytes] = {}
    pending: dict[int, bytes] = {}
    at = 32
    while at + 24 + page_size <= len(wal):
        number, commit = int.from_bytes(wal[at:at + 4], "big"), int.from_bytes(
            wal[at + 4:at + 8], "big")
        pending[number] = wal[at + 24:at + 24 + page_size]
        if commit:
            pages.update(pending)
            pending.clear()
        at += 24 + page_size
    return pages


@dataclass
class Cell:
    rowid: int
    page: int
    start: int  # offset in the SQLite file (main file pages only)
    end: int
    in_wal: bool


def cells(conn: sqlite3.Connection, main: bytes, wal: dict[int, bytes]) -> dict[int, Cell]:
    """Every row of table ``vectors``: its page and its cell's bytes (from the table's leaf
    pages, as SQLite sees them: the WAL's copy of a page wins)."""
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    leaves = [p for (p,) in conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'vectors' AND pagetype = 'leaf'")]
    found: dict[int, Cell] = {}
    for page in leaves:
        base = (page - 1) * page_size
        data = wal.get(page) or main[base:base + page_size]
        assert data[0] == 0x0D  # a table leaf page
        count = int.from_bytes(data[3:5], "big")
        for i in range(count):
            offset = int.from_bytes(data[8 + 2 * i:10 + 2 * i], "big")
            payload, a = _varint(data, offset)
            rowid, b = _varint(data, offset + a)
            length = a + b + payload
            assert offset + length <= page_size  # no overflow page: a row is in one cell
            found[rowid] = Cell(rowid, page, base + offset, base + offset + length, page in wal)
    return found


@dataclass
class Cut:
    at: int  # the new size of the SQLite file
    intact: set[bytes]  # keys whose rows lie wholly before the cut (or in the WAL)
    damaged: set[bytes]  # keys whose cell straddles the cut: read back with a zeroed tail


def plan_cut(conn: sqlite3.Connection, path: Path, where: float) -> Cut:
    """A cut through the middle of the last cell of the table's leaf page at ``where`` of
    its leaf pages (those the WAL does not hold): the cell's second half (vector tail,
    checksum) reads back as zeros, the pages after it are lost (unless the WAL has them)."""
    wal_file = Path(f"{path}-wal")
    wal = wal_pages(wal_file.read_bytes()) if wal_file.exists() else {}
    layout = cells(conn, path.read_bytes(), wal)
    keys = dict(conn.execute("SELECT rowid, key FROM vectors"))
    pages = sorted({c.page for c in layout.values() if not c.in_wal})
    page = pages[int(where * (len(pages) - 1))]
    victim = max((c for c in layout.values() if c.page == page), key=lambda c: c.start)
    at = (victim.start + victim.end) // 2
    intact = {keys[c.rowid] for c in layout.values() if c.in_wal or c.end <= at}
    return Cut(at, intact, {keys[victim.rowid]})


def make_cache(run: Embctl, with_wal: bool, where: float) -> tuple[Path, np.ndarray, Cut,
                                                                    dict[bytes, bytes]]:
    """Embed TEXTS in two runs, then cut the file as planned.  ``with_wal``: the second run's
    rows stay in the WAL, as a killed process leaves them (a connection held open keeps
    embed's close from checkpointing; the files are copied as they were, the holder closed,
    and the copies put back)."""
    clean = vectors(embed(run, TEXTS[:FIRST]).stdout)
    path = cache_file(run.home)
    wal = Path(f"{path}-wal")
    holder = sqlite3.connect(path) if with_wal else None
    if holder is not None:  # a reader in WAL mode keeps a shared lock: no checkpoint at close
        holder.execute("SELECT COUNT(*) FROM meta").fetchone()
    try:
        clean = np.vstack([clean, vectors(embed(run, TEXTS[FIRST:]).stdout)])
        probe = holder or sqlite3.connect(path)
        try:
            cut = plan_cut(probe, path, where)
            before = dict(probe.execute("SELECT key, vec FROM vectors"))
        finally:
            if holder is None:
                probe.close()
        files = {p: p.read_bytes() for p in (path, wal) if p.exists()}
    finally:
        if holder is not None:
            holder.close()  # the last connection: checkpoints and removes the WAL
    for p, data in files.items():
        p.write_bytes(data)
    assert wal.exists() == with_wal and (not with_wal or wal.stat().st_size > 0)
    Path(f"{path}-shm").unlink(missing_ok=True)
    with open(path, "r+b") as f:
        f.truncate(cut.at)
    assert len(before) == len(TEXTS) and cut.damaged and cut.intact
    return path, clean, cut, before


@pytest.mark.parametrize("with_wal", [False, True], ids=["no-wal", "wal"])
@pytest.mark.parametrize("where", [0.0, 0.5, 1.0], ids=["first-page", "middle", "last-page"])
def test_cut_cache_repair_drops_exactly_the_damaged_rows(pulled, where, with_wal):
    path, clean, cut, before = make_cache(pulled, with_wal, where)
    total = len(TEXTS)

    check = pulled("verify")
    assert check.returncode == 1, check.stdout + check.stderr
    rows = "row" if len(cut.damaged) == 1 else "rows"
    assert (f"{len(cut.intact)} of {total} vectors can be read whole, {len(cut.damaged)} "
            f"damaged {rows}") in check.stdout
    assert "run with --repair" in check.stderr

    repair = pulled("verify", "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "Traceback" not in repair.stderr
    assert (f"saved {len(cut.intact)} of {total} vectors into a new file; "
            f"{total - len(cut.intact)} could not be read, {len(cut.damaged)} of them damaged"
            ) in repair.stdout
    kept = stored(path)
    assert set(kept) == cut.intact  # every good row kept, no damaged one
    assert all(kept[k] == before[k] for k in kept)  # byte for byte as first written
    after = pulled("verify")
    assert after.returncode == 0, after.stdout + after.stderr

    again = embed(pulled, TEXTS)
    assert f"{len(cut.intact)} cache hits, {total - len(cut.intact)} computed)" in again.stderr
    assert_same_vectors(vectors(again.stdout), clean)
    assert_same_vectors(vectors(embed(pulled, TEXTS).stdout), clean)  # now all from the cache
    assert len(stored(path)) == total


def _overwrite(path: Path, keys: list[bytes], source: bytes) -> None:
    """Put the vector of ``source`` into the rows of ``keys``, leaving their checksums as they
    were: plausible values (finite, unit norm), just not theirs."""
    conn = sqlite3.connect(path)
    try:
        (vec,) = conn.execute("SELECT vec FROM vectors WHERE key = ?", (source,)).fetchone()
        with conn:
            for key in keys:
                assert conn.execute("UPDATE vectors SET vec = ? WHERE key = ?",
                                    (vec, key)).rowcount == 1
    finally:
        conn.close()


@pytest.mark.parametrize("n", [1, 3])
def test_overwritten_vectors_are_recomputed_and_rewritten_by_embed(pulled, n):
    texts = TEXTS[:20]
    clean = vectors(embed(pulled, texts).stdout)
    path = cache_file(pulled.home)
    before = stored(path)
    victims = sorted(before)[:n]
    _overwrite(path, victims, sorted(before)[-1])

    run = embed(pulled, texts)
    word = "row" if n == 1 else "rows"
    assert f"{20 - n} cache hits, {n} computed, {n} damaged {word} recomputed)" in run.stderr
    assert_same_vectors(vectors(run.stdout), clean)
    rewritten = stored(path)
    assert set(rewritten) == set(before)
    again = embed(pulled, texts)  # rewritten with their checksums: hits now
    assert "20 cache hits, 0 computed)" in again.stderr and "damaged" not in again.stderr
    assert_same_vectors(vectors(again.stdout), clean)
    assert pulled("verify").returncode == 0


def test_verify_reports_overwritten_vectors_and_repair_drops_only_them(pulled):
    texts = TEXTS[:20]
    clean = vectors(embed(pulled, texts).stdout)
    path = cache_file(pulled.home)
    before = stored(path)
    victims = sorted(before)[:2]
    _overwrite(path, victims, sorted(before)[-1])

    check = pulled("verify", "--json")
    assert check.returncode == 1
    (problem,) = [p for p in json.loads(check.stdout)["problems"] if p["kind"] == "vectors"]
    assert problem["bad"] == {"damaged": 2}
    assert "2 damaged rows" in pulled("verify").stdout

    repair = pulled("verify", "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    kept = stored(path)
    assert set(kept) == set(before) - set(victims)
    assert all(kept[k] == before[k] for k in kept)
    assert pulled("verify").returncode == 0
    run = embed(pulled, texts)
    assert "18 cache hits, 2 computed)" in run.stderr
    assert_same_vectors(vectors(run.stdout), clean)


def _as_schema_1(path: Path) -> None:
    """Turn a cache file into what embctl wrote before the checksums (schema 1: no ``sum``
    column), as an upgrade finds it."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            if "sum" in {row[1] for row in conn.execute("PRAGMA table_info(vectors)")}:
                conn.execute("ALTER TABLE vectors DROP COLUMN sum")
            conn.execute("UPDATE meta SET value = '1' WHERE name = 'schema'")
    finally:
        conn.close()


def _cut_tail(path: Path, key: bytes, floats: int) -> None:
    """What an earlier embctl's repair of a cut file kept: a row whose vector ends in zeros and
    whose last_used (stored after the vector) reads 0."""
    conn = sqlite3.connect(path)
    try:
        (vec,) = conn.execute("SELECT vec FROM vectors WHERE key = ?", (key,)).fetchone()
        with conn:
            conn.execute("UPDATE vectors SET vec = ?, last_used = 0 WHERE key = ?",
                         (vec[:-4 * floats] + bytes(4 * floats), key))
    finally:
        conn.close()


def test_an_older_cache_keeps_its_good_rows_and_loses_its_cut_ones(pulled):
    """docs/cache.md, "Checksums": rows from before the checksums are adopted when they show
    no sign of damage, and dropped (recomputed) when they do."""
    texts = TEXTS[:20]
    clean = vectors(embed(pulled, texts).stdout)
    path = cache_file(pulled.home)
    before = stored(path)
    cut = sorted(before)[5]
    _as_schema_1(path)
    _cut_tail(path, cut, 232)

    check = pulled("verify")  # read-only: judged without changing the file
    assert check.returncode == 1 and "1 damaged row:" in check.stdout
    run = embed(pulled, texts)  # the first writer adopts the rows
    assert "19 cache hits, 1 computed)" in run.stderr
    assert_same_vectors(vectors(run.stdout), clean)
    conn = sqlite3.connect(path)
    try:
        schema = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()[0]
        nulls = conn.execute("SELECT COUNT(*) FROM vectors WHERE sum IS NULL").fetchone()[0]
    finally:
        conn.close()
    assert int(schema) >= 2 and nulls == 0
    assert stored(path) == {**before, cut: stored(path)[cut]}
    assert pulled("verify").returncode == 0
