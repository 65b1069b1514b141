"""``embctl export REF --vectors --texts FILE``: FILE's records with their cached vectors.

A cache row holds a key, ``sha256(namespace id, 0x00, text)``, and a vector; the text only
with ``--store-text``.  FILE (JSONL, read as ``embed`` reads it: the same ``--text-field``,
the same bad lines) gives the texts back: each record is keyed as ``embed`` keyed it in
that cache's namespace and written, every field kept and in FILE's order, with its cached
vector as ``"embedding"``: byte for byte what ``embed`` wrote for it.  Nothing is computed: a
record whose text is not in the cache is left out and counted (its line numbers returned,
its line written to ``missing`` when given, ready for ``embed -i``).  The cache is read from
one snapshot; FILE is streamed, window by window.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from embctl.embed.records import Options, Record, Stats
from embctl.errors import EmbctlError, UsageError
from embctl.outfile import OutputFile
from embctl.vectors import rowcheck
from embctl.vectors.meta import info_from_meta, read_meta
from embctl.vectors.naming import KeyMaker
from embctl.vectors.sqlite import connect

WINDOW = 2048  # records looked up at once
_CHUNK = 500  # keys per IN (...) query


@dataclass
class Joined:
    """What a join did; ``missing_lines``: FILE's line numbers whose text has no vector."""

    path: str
    texts: str
    records: int = 0  # records read from FILE (blank lines not counted)
    written: int = 0
    missing_lines: list[int] = field(default_factory=list)
    dim: int = 0
    namespace: str = ""
    missing_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": "jsonl", "texts": self.texts,
                "records": self.records, "vectors": self.written,
                "missing": len(self.missing_lines), "missing_lines": self.missing_lines,
                "missing_path": self.missing_path, "dim": self.dim,
                "namespace": self.namespace}


def join_texts(store_file: Path, texts: str, out: str, *, text_field: str = "text",
               missing: Path | None = None) -> Joined:
    """Write FILE ``texts``' records with their vectors from ``store_file`` to ``out`` (a
    file, or ``-``: stdout)."""
    from embctl.embed.outputs import JsonlWriter

    conn = connect(store_file, readonly=True)
    stream = writer = missing_out = None
    ok = False
    try:
        conn.execute("BEGIN")  # one snapshot, whatever embeds into the cache meanwhile
        info = info_from_meta(read_meta(conn))
        kind = info.namespace.get("input_kind", "text")
        if kind != "text":
            raise UsageError(f"--texts joins texts; this cache holds {kind} inputs")
        result = Joined(path=out, texts=texts, dim=info.dim or 0, namespace=info.ns_id)
        lookup = _Lookup(conn, store_file.name, KeyMaker(info.ns_id), info.dim)
        opts = Options(text_field=text_field)
        stream = sys.stdin.buffer if texts == "-" else _open(texts)
        writer = JsonlWriter(None if out == "-" else out, opts)
        if missing is not None:
            missing_out = OutputFile(missing, "--missing")
            result.missing_path = str(missing)
        for window in _windows(_records(stream, texts, opts)):
            result.records += len(window)
            vectors = lookup(window)
            found = [r for r in window if r.line in vectors]
            lost = [r for r in window if r.line not in vectors]
            if found:
                import numpy as np

                writer.write(found, np.stack([vectors[r.line] for r in found]))
                result.written += len(found)
            if lost:
                result.missing_lines.extend(r.line for r in lost)
                if missing_out is not None:
                    missing_out.write(b"".join(bytes(r.raw or b"") + b"\n" for r in lost))
        ok = True
    finally:
        if writer is not None:
            writer.close(ok)
        if missing_out is not None and ok:
            missing_out.commit()
        elif missing_out is not None:
            missing_out.discard()
        if stream is not None and stream is not sys.stdin.buffer:
            stream.close()
        conn.close()
    return result


class _Lookup:
    """Records -> {line: vector} for those whose text the cache holds (checked rows only)."""

    def __init__(self, conn: sqlite3.Connection, name: str, key: KeyMaker,
                 dim: int | None) -> None:
        from embctl.embed.adapter import TextAdapter

        self.conn = conn
        self.name = name
        self.key = key
        self.key_bytes = TextAdapter().key_bytes  # the bytes embed keys a text by
        self.dim = dim
        self.sums = rowcheck.has_sums(conn)

    def __call__(self, records: list[Record]) -> dict[int, Any]:
        import numpy as np

        keys = {r.line: self.key(self.key_bytes(r.text)) for r in records}
        unique = list(dict.fromkeys(keys.values()))
        blobs: dict[bytes, bytes] = {}
        extra = "sum" if self.sums else "NULL"
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i:i + _CHUNK]
            rows = self.conn.execute(
                f"SELECT key, vec, last_used, {extra} FROM vectors WHERE key IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall()
            for row in rows:
                if not rowcheck.check(row, self.dim, self.sums) or (
                        self.dim and len(row[1]) != self.dim * 4):
                    raise EmbctlError(f"{self.name}: a damaged row (its checksum does not "
                                      "match); run `embctl verify --repair`")
                blobs[row[0]] = row[1]
        return {line: np.frombuffer(blobs[key], dtype="<f4") for line, key in keys.items()
                if key in blobs}


def _open(texts: str) -> IO[bytes]:
    try:
        return open(texts, "rb")  # noqa: SIM115  (closed by join_texts)
    except OSError as exc:
        raise UsageError(f"--texts {texts}: {exc.strerror or exc}") from None


def _records(stream: IO[bytes], texts: str, opts: Options) -> Iterator[Record]:
    """FILE's records as ``embed`` reads them; a bad line is one line naming it (exit 2:
    FILE is the command line's, and exit 1 means texts without a vector)."""
    from embctl.embed.inputs import read_records

    def on_bad(line: int, message: str) -> None:
        raise UsageError(f"--texts {texts}: line {line}: {message}")

    yield from read_records(stream, opts, Stats(), on_bad, hint_lines=False)


def _windows(records: Iterable[Record]) -> Iterator[list[Record]]:
    window: list[Record] = []
    for record in records:
        window.append(record)
        if len(window) >= WINDOW:
            yield window
            window = []
    if window:
        yield window
