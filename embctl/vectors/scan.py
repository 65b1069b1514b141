"""Vector caches for ``ls``, ``du``, ``rm`` and ``verify``.

Listing reads only each file's small ``meta`` table with the standard library's sqlite3 (no
numpy, no row scans), so ``embctl ls`` stays fast however many vectors are cached.
"""

from __future__ import annotations

import math
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embctl.console import plural
from embctl.inventory import Entry
from embctl.naming import row_name
from embctl.vectors import evict, files, rowcheck, sqlite
from embctl.vectors.meta import info_from_meta, read_meta
from embctl.vectors.notes import annotate

if TYPE_CHECKING:
    from embctl.backends import Model


def _entry(path: Path) -> Entry:
    try:
        conn = sqlite.connect(path, readonly=True)
        try:
            info = info_from_meta(read_meta(conn))
        finally:
            conn.close()
    except (sqlite3.Error, ValueError, OSError) as exc:
        size = files.file_size(path)
        creating = _being_created(path, exc)
        return Entry("vectors", path.stem, None, None, None, None, size, str(path),
                     status="incomplete" if creating else "broken",
                     extra={"namespace": path.stem,
                            "error": "being created by another process" if creating
                            else str(exc)})
    # Sized after the read: opening a WAL database leaves its -shm (and -wal) beside it, which
    # rm then frees too (sized before, ls said 49 kB of a cache whose rm freed 82 kB).
    size = files.file_size(path)
    ns = info.namespace
    backend = ns.get("backend")
    repo_id = ns.get("repo_id")
    # The name every row of this model has (an alias or the repo id), whatever was typed.
    ref = row_name(backend, repo_id, info.ref) if repo_id or info.ref else path.stem
    params = {k: v for k, v in ns.items() if k not in ("backend", "repo_id", "revision", "v")}
    return Entry(
        kind="vectors",
        ref=ref,
        repo_id=repo_id,
        backend=backend,
        revision=ns.get("revision"),
        dim=info.dim,
        size_bytes=size,
        path=str(path),
        last_used=info.last_used,
        count=info.count,
        extra={"namespace": info.ns_id or path.stem, "params": params,
               "stores_text": info.stores_text},
    )


#: A file with no tables yet is one that VectorStore.open is creating (the file exists from
#: the connection's first write until its schema commits, milliseconds later); older, it was
#: left so by a crash there and is reported broken.
CREATING_GRACE_S = 60


def _being_created(path: Path, exc: BaseException) -> bool:
    if not (isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)):
        return False
    try:
        return time.time() - path.stat().st_mtime < CREATING_GRACE_S
    except OSError:
        return False


def vector_entries(root: Path | None = None) -> list[Entry]:
    """One Entry (kind "vectors") per cache file, with its notes (what tells it apart from
    the others: :mod:`embctl.vectors.notes`); unreadable files have status "broken"."""
    return annotate(_entry(path) for path in files.store_files(root))


def _matches(entry: Entry, model: Model | None, namespace: str | None) -> bool:
    from embctl.stores.folder import names  # the rule of the store's select (FolderStore)

    return names(entry, model, namespace, "namespace")


def select_vectors(model: Model | None = None, namespace: str | None = None,
                   root: Path | None = None) -> list[Entry]:
    """Caches of ``model`` (any revision and options; one commit when the reference pins one),
    or the one namespace (an id or unique prefix of one), or every cache when both are None."""
    return [e for e in vector_entries(root) if _matches(e, model, namespace)]


def remove_vectors(model: Model | None = None, namespace: str | None = None, *,
                   dry_run: bool = False, root: Path | None = None) -> list[Entry]:
    """Delete the selected caches (file, -wal, -shm) and return their entries, whose
    ``size_bytes`` is what was (or, with ``dry_run``, would be) freed."""
    chosen = select_vectors(model, namespace, root)
    if dry_run:
        return chosen
    return [replace(e, size_bytes=files.remove_files(Path(e.path))) for e in chosen]


def drop_revision(repo_id: str, revision: str, *, root: Path | None = None,
                  backend: str | None = None) -> list[Entry]:
    """Delete every cache of ``repo_id`` at ``revision`` (any options; only ``backend``'s
    when given) and return their entries: once a damaged file of that revision is repaired,
    no vector computed before the repair is served (when the damage began is unknown)."""
    chosen = [e for e in vector_entries(root) if e.repo_id == repo_id and e.revision == revision
              and (backend is None or e.backend == backend)]
    return [replace(e, size_bytes=files.remove_files(Path(e.path))) for e in chosen]


def vector_files(entry: Entry) -> list[Path]:
    """The files of a cache: the SQLite file with its -wal and -shm (what removing it deletes;
    the WAL first, so a crash midway leaves no WAL beside a missing database)."""
    path = Path(entry.path)
    return [Path(f"{path}-wal"), Path(f"{path}-shm"), path]


@dataclass
class VectorCheck:
    """The verdict on one cache file."""

    entry: Entry
    ok: bool
    checked: int = 0  # vectors read
    problems: list[str] = field(default_factory=list)  # one line each, for people
    bad: dict[str, int] = field(default_factory=dict)  # "damaged", "nan", "inf", "zero_norm",
    # "wrong_dim"; "damaged": the row fails its checksum (cut off or overwritten)
    removed: int = 0  # bad vectors deleted by repair
    repaired: bool = False  # repair deleted every bad vector (the next embed recomputes them)

    @property
    def resolved(self) -> bool:
        """Nothing is left wrong: nothing was, or repair mended it."""
        return self.ok or self.repaired

    def lines(self) -> list[str]:
        """One line per problem, for people."""
        return [f"{self.entry.ref} (vectors {self.entry.path}): {p}" for p in self.problems]

    def to_json(self) -> dict[str, Any]:
        return {"kind": "vectors", "ref": self.entry.ref, "path": self.entry.path,
                "namespace": self.entry.extra.get("namespace"), "ok": self.ok,
                "checked": self.checked, "problems": self.problems, "bad": self.bad,
                "removed": self.removed}


def _classify_numpy(rows: list[tuple[bytes, bytes]], dim: int) -> list[tuple[bytes, str]]:
    import numpy as np

    bad: list[tuple[bytes, str]] = []
    good = []
    for key, vec in rows:
        if len(vec) != dim * 4:
            bad.append((key, "wrong_dim"))
        else:
            good.append((key, vec))
    if good:
        mat = np.frombuffer(b"".join(v for _, v in good), dtype="<f4").reshape(len(good), dim)
        nan = np.isnan(mat).any(axis=1)
        inf = np.isinf(mat).any(axis=1)
        with np.errstate(all="ignore"):
            zero = ~nan & ~inf & (np.abs(mat).max(axis=1) == 0)
        for i in np.flatnonzero(nan | inf | zero):
            bad.append((good[i][0], "nan" if nan[i] else "inf" if inf[i] else "zero_norm"))
    return bad


def _classify_plain(rows: list[tuple[bytes, bytes]], dim: int) -> list[tuple[bytes, str]]:
    import array

    bad = []
    for key, vec in rows:
        if len(vec) != dim * 4:
            bad.append((key, "wrong_dim"))
            continue
        arr = array.array("f", vec)
        if sys.byteorder == "big":
            arr.byteswap()
        if any(math.isnan(x) for x in arr):
            bad.append((key, "nan"))
        elif any(math.isinf(x) for x in arr):
            bad.append((key, "inf"))
        elif not any(arr):
            bad.append((key, "zero_norm"))
    return bad


def _check_one(entry: Entry, repair: bool) -> VectorCheck:
    check = VectorCheck(entry, ok=True)
    if entry.status == "incomplete":  # being created right now: nothing to check yet
        return check
    if _inspect(entry, repair, check):
        if repair:
            _salvage(entry, check)
        else:  # what a repair would keep and drop as damaged (the repair says so itself)
            from embctl.vectors.salvage import survey

            check.problems.append(survey(Path(entry.path)).describe())
    return check


def _salvage(entry: Entry, check: VectorCheck) -> None:
    """Replace a damaged file by what can be read of it (or drop it), then check that."""
    from embctl.vectors.salvage import salvage

    path = Path(entry.path)
    try:
        result = salvage(path)
    except (sqlite3.Error, OSError) as exc:
        check.problems.append(f"could not be repaired: {exc}")
        return
    check.problems.append(result.describe())
    check.repaired = True
    if not result.dropped:  # what was saved may hold bad vectors too: repaired the same way
        again = VectorCheck(_entry(path), ok=True)
        damaged = _inspect(again.entry, True, again)
        check.checked += again.checked
        check.removed += again.removed
        check.problems += again.problems
        for kind, n in again.bad.items():
            check.bad[kind] = check.bad.get(kind, 0) + n
        check.repaired = not damaged and (again.ok or again.repaired)


def _inspect(entry: Entry, repair: bool, check: VectorCheck) -> bool:
    """Check one file, deleting bad vectors with ``repair``; -> True when the file itself is
    damaged (unreadable, failing SQLite's integrity check), which only a salvage mends."""
    if entry.status == "broken":
        check.ok = False
        check.problems.append(f"cannot be read: {entry.extra.get('error')}")
        return True
    try:
        conn = sqlite.connect(Path(entry.path), readonly=not repair, create=False)
    except sqlite3.Error as exc:
        check.ok = False
        check.problems.append(f"cannot be opened: {exc}")
        return True
    try:
        result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        if result != ["ok"]:
            check.ok = False
            check.problems.append("SQLite integrity check failed: " + "; ".join(result[:5]))
            return True
        try:
            import numpy  # noqa: F401

            classify = _classify_numpy
        except ImportError:
            classify = _classify_plain
        dim = entry.dim
        flagged: list[tuple[bytes, str]] = []
        sums = rowcheck.has_sums(conn)
        cur = conn.execute("SELECT key, vec, last_used, " + ("sum" if sums else "NULL")
                           + " FROM vectors")
        while rows := cur.fetchmany(4096):
            if dim is None:
                dim = len(rows[0][1] or b"") // 4
            check.checked += len(rows)
            flagged += _flag(rows, dim, sums, classify)
        actual = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        if actual != entry.count:
            check.problems.append(f"meta count {entry.count} != {actual} rows (fixed by repair)"
                                  if not repair else f"count corrected to {actual}")
            if repair:
                with sqlite._Txn(conn):
                    conn.execute("UPDATE meta SET value = ? WHERE name = 'count'", (str(actual),))
        for _, kind in flagged:
            check.bad[kind] = check.bad.get(kind, 0) + 1
        if flagged:
            check.ok = False
            others = {k: n for k, n in check.bad.items() if k != "damaged"}
            if check.bad.get("damaged"):
                n = check.bad["damaged"]
                check.problems.append(f"{plural(n, 'damaged row')}: the checksum "
                                      "does not match the vector (cut off or overwritten)")
            if others:
                details = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(others.items()))
                check.problems.append(f"{plural(sum(others.values()), 'bad vector')} "
                                      f"({details})")
            if repair:
                with sqlite._Txn(conn):
                    check.removed = evict._delete(conn, [k for k, _ in flagged])
                check.repaired = check.removed == len(flagged)
                check.problems.append(f"removed {plural(check.removed, 'bad vector')}; "
                                      "they will be recomputed on the next embed")
    except sqlite3.DatabaseError as exc:
        check.ok = False
        check.problems.append(f"unreadable: {exc}")
        return True
    finally:
        conn.close()
    return False


def _flag(rows: list[tuple], dim: int, sums: bool,
          classify: Callable[[list[tuple[bytes, bytes]], int], list[tuple[bytes, str]]],
          ) -> list[tuple[bytes, str]]:
    """The bad rows of (key, vec, last_used, sum) ``rows``, each once: what ``classify``
    finds wrong with the vector ("nan", "wrong_dim"...), else "damaged" when the row fails
    its checksum (a schema-1 file's rows, which have none: rowcheck.legacy_ok)."""
    unread = [(r[0], "damaged") for r in rows if not isinstance(r[1], bytes)]
    flagged = unread + classify([(r[0], r[1]) for r in rows if isinstance(r[1], bytes)], dim)
    seen = {k for k, _ in flagged}
    return flagged + [(r[0], "damaged") for r in rows
                      if r[0] not in seen and not rowcheck.check(r, dim, sums)]


def verify_vectors(model: Model | None = None, namespace: str | None = None, *,
                   repair: bool = False, root: Path | None = None) -> list[VectorCheck]:
    """Run SQLite's integrity check on each selected cache and flag vectors with NaN, inf,
    zero norm or the wrong dimension, and rows that fail their checksum ("damaged").  With
    ``repair``, delete the flagged vectors (the next embed recomputes them), and replace a
    damaged file by what can be read of it, or drop it when nothing can (see
    embctl/vectors/salvage.py)."""
    return check_vectors(select_vectors(model, namespace, root), repair=repair)


def check_vectors(entries: list[Entry], *, repair: bool = False) -> list[VectorCheck]:
    """:func:`verify_vectors` on caches already selected."""
    return [_check_one(entry, repair) for entry in entries]
