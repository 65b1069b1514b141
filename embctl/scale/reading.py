"""``-i PATH`` for ``--engine ray``: JSONL files into a Ray Dataset, by Ray's read tasks.

PATH is a file, a folder (its ``*.jsonl``, ``*.json``, ``*.ndjson`` files, compressed ones too)
or a glob, on any filesystem Ray Data reads (local, ``s3://``, ``gs://``...).  Each file is read
as a stream of lines through single-process embed's own parser
(:func:`embctl.embed.inputs.read_records`), so the same lines are bad for the same reasons:
under ``--on-error fail`` the first stops the job, naming the file and the line; under
``skip`` they are counted (and the first few named) in the run's tally.  Every field of an
object is kept, as a column.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from embctl.embed.inputs import BadLines
from embctl.embed.records import InputError, Options, Stats
from embctl.errors import UsageError
from embctl.scale import counting

if TYPE_CHECKING:
    import pyarrow as pa

#: A folder's files that are read (Ray Data also opens their .gz, .bz2, .zst forms).
EXTENSIONS = ["jsonl", "json", "ndjson", "jsonl.gz", "json.gz", "ndjson.gz", "jsonl.zst"]
CHUNK = 1 << 20


def _lines(f: Any) -> Iterator[bytes]:
    """A pyarrow input stream as lines (each with its ``\\n``, the last maybe without)."""
    rest = b""
    while chunk := f.read(CHUNK):
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for part in parts:
            yield part + b"\n"
    if rest:
        yield rest


class _FileBadLines(BadLines):
    """single-process embed's bad-line rules, with the file named and the warnings kept for
    the driver (a read task's stderr is not the user's)."""

    def __init__(self, path: str, opts: Options, stats: Stats) -> None:
        super().__init__(opts, stats, warn_each=False)
        self.path = path
        self.warnings: list[str] = []

    def __call__(self, line: int, message: str) -> None:
        if self.fail:
            raise InputError(f"{self.path}: line {line}: {message} "
                             "(use --on-error skip to skip bad lines)")
        self.stats.skipped += 1
        if len(self.warnings) < counting.MAX_WARNINGS:
            self.warnings.append(f"{self.path}: line {line}: {message}; skipped")


def _table(rows: list[dict[str, Any]], path: str, first: int, last: int) -> pa.Table:
    """Records as a table, one column per field of any of them (missing: null)."""
    import pyarrow as pa

    try:
        return pa.Table.from_struct_array(pa.array(rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{path}: lines {first}-{last}: the objects do not make one table "
                         f"(a field with values of different types?): {exc}") from None


def datasource(opts: Options, rows_per_block: int, tally: Any) -> type:
    """The Datasource class (made here: it subclasses ray's, imported only now)."""
    from ray.data.datasource import FileBasedDatasource

    class JsonlSource(FileBasedDatasource):
        def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
            from embctl.embed.inputs import read_records

            stats = Stats()
            on_bad = _FileBadLines(path, opts, stats)
            rows: list[dict[str, Any]] = []
            first = 0
            for record in read_records(_lines(f), opts, stats, on_bad, hint_lines=False):
                first = first or record.line
                rows.append({**(record.obj or {}),
                             counting.ROW_COLUMN: counting.row_mark(path, record.line)})
                if len(rows) >= rows_per_block:
                    yield _table(rows, path, first, record.line)
                    rows, first = [], 0
            if rows:
                yield _table(rows, path, first, stats.read)
            # Counted once the file is read whole, under its path: an attempt that fails or
            # is killed partway counts nothing (a failed job prints no summary), and Ray's
            # retry of the task counts the file once.
            counting.add(tally, {"read": stats.read, "blank": stats.blank,
                                 "skipped": stats.skipped}, on_bad.warnings,
                         key=counting.file_key(path))

    return JsonlSource


def expand(path: str) -> tuple[list[str] | str, bool]:
    """``-i PATH`` as Ray Data's paths: (paths, is a folder).  A glob is expanded here (Ray
    Data takes none): locally with :mod:`glob`, elsewhere through pyarrow's filesystem."""
    remote = "://" in path
    if not any(c in path for c in "*?["):
        if remote:
            return path, _remote_is_dir(path)
        if not os.path.exists(path):
            raise UsageError(f"-i {path}: no such file or folder")
        if os.path.isdir(path):
            check_folder(path)
        return os.path.abspath(path), os.path.isdir(path)
    if remote:
        found = _remote_glob(path)
    else:
        found = [os.path.abspath(p) for p in sorted(glob.glob(path, recursive=True))
                 if os.path.isfile(p)]
    if not found:
        raise UsageError(f"-i {path}: no file matches")
    return found, False


def _readable(name: str) -> bool:
    """A file name Ray Data reads in a folder: one of :data:`EXTENSIONS`, in any case."""
    return name.lower().endswith(tuple(f".{ext}" for ext in EXTENSIONS))


def check_folder(folder: str) -> None:
    """A local folder must hold a file Ray Data will read, found as Ray lists it (the whole
    tree; names starting with ``.`` or ``_`` right under the folder skipped): else Ray fails
    only once started, with a traceback.  Stops at the first readable file."""
    others: list[str] = []
    skipped = 0
    seen: set[str] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):  # as pyarrow's listing
        if os.path.realpath(top) in seen:  # a link back up the tree
            dirs.clear()
            continue
        seen.add(os.path.realpath(top))
        dirs.sort()
        for name in sorted(files):
            relative = os.path.relpath(os.path.join(top, name), folder)
            if not _readable(name):
                others.append(relative)
            elif relative.startswith((".", "_")):
                skipped += 1
            else:
                return
    if not others and not skipped:
        raise UsageError(f"-i {folder}: the folder is empty; --engine ray reads its .jsonl, "
                         ".json and .ndjson files (.gz too)")
    parts = []
    if others:
        parts.append(f"{len(others):,} other files, e.g. {others[0]}" if len(others) > 1
                     else f"1 other file: {others[0]}")
    if skipped:
        parts.append(f"{skipped:,} skipped, as Ray skips names starting with '.' or '_'")
    raise UsageError(f"-i {folder}: no .jsonl, .json or .ndjson files ({'; '.join(parts)}); "
                     "name a file or a glob to read others as JSONL")


def _remote_is_dir(uri: str) -> bool:
    import pyarrow.fs as pfs

    try:
        fs, where = pfs.FileSystem.from_uri(uri)
        return fs.get_file_info(where).type == pfs.FileType.Directory
    except (OSError, ValueError) as exc:
        raise UsageError(f"-i {uri}: {exc}") from None


def _remote_glob(uri: str) -> list[str]:
    """``s3://bucket/data/*.jsonl``: the files under the part before the first wildcard."""
    import fnmatch

    import pyarrow.fs as pfs

    scheme, _, rest = uri.partition("://")
    head = rest[:min(rest.find(c) for c in "*?[" if c in rest)].rpartition("/")[0]
    try:
        fs, base = pfs.FileSystem.from_uri(f"{scheme}://{head}")
        infos = fs.get_file_info(pfs.FileSelector(base, recursive=True))
    except (OSError, ValueError) as exc:
        raise UsageError(f"-i {uri}: {exc}") from None
    return sorted(f"{scheme}://{info.path}" for info in infos
                  if info.type == pfs.FileType.File and fnmatch.fnmatchcase(info.path, rest))


def read(path: str, opts: Options, rows_per_block: int, tally: Any,
         blocks: int | None = None,
         inputs: tuple[list[str] | str, bool] | None = None) -> Any:
    """The Dataset of ``-i PATH``'s records (Ray must be initialized): one read task per file,
    each yielding blocks of ``rows_per_block`` records; with ``blocks`` above the number of
    files, Ray Data cuts each block into pieces to reach it.  Read tasks take no CPU slot
    (they would wait behind the actors).  ``inputs``: ``expand(path)``, when made already."""
    import ray

    paths, folder = inputs or expand(path)
    try:
        source = datasource(opts, rows_per_block, tally)(
            paths, file_extensions=EXTENSIONS if folder else None)
    except ValueError as exc:  # a remote folder Ray lists with nothing to read in it
        text = str(exc).strip().splitlines()
        raise UsageError(f"-i {path}: {text[0] if text else 'nothing to read'}") from None
    files = _files(source)
    count = max(blocks or 0, files or 0) or None
    return ray.data.read_datasource(source, num_cpus=0, override_num_blocks=count)


def _files(source: Any) -> int | None:
    """How many files a Datasource lists (None: Ray Data decides)."""
    try:
        return max(1, len(source._paths()))  # FileBasedDatasource's listing
    except Exception:  # another Ray version's internals
        return None
