"""``embctl export REF --vectors -o FILE``: a vector cache as .npy, .safetensors, .parquet or
.jsonl, streamed from one consistent read snapshot of the SQLite file.

Every format carries the keys (hex sha256 of namespace and input) and, when the cache stores
them (``--store-text``), the texts: inside the file for .parquet and .jsonl, beside it
(``NAME.keys.txt``, ``NAME.texts.jsonl``) for .npy and .safetensors.  The safetensors file is
written by hand (8-byte header length, JSON header, raw data) so that it streams: tensor
``embeddings`` (F32, N x dim) and ``keys`` (U8, N x 32), the namespace in ``__metadata__``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from embctl.console import plural
from embctl.errors import EmbctlError, UsageError
from embctl.outfile import OutputFile
from embctl.vectors import rowcheck
from embctl.vectors.meta import info_from_meta, read_meta
from embctl.vectors.naming import canonical
from embctl.vectors.sqlite import connect

FORMATS = ("npy", "safetensors", "parquet", "jsonl")


def format_for(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    for name in FORMATS:
        if path.endswith(f".{name}"):
            return name
    raise UsageError(f"-o {path}: cannot tell the format; use a .npy, .safetensors, .parquet "
                     "or .jsonl name, or --format")


class _Out(OutputFile):
    """A file written under a temporary name, renamed into place by ``commit``; write errors
    are one line naming it (embctl/outfile.py)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "-o")


def _sidecar(path: Path, suffix: str) -> Path:
    stem = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
    return path.with_name(stem + suffix)


def export_vectors(store_file: Path, out: Path, fmt: str) -> dict[str, Any]:
    """Write every vector of one cache file to ``out``.  Returns a JSON-able summary."""
    import numpy as np

    conn = connect(store_file, readonly=True)
    outs: list[_Out] = []
    try:
        conn.execute("BEGIN")  # one snapshot: count and rows agree
        info = info_from_meta(read_meta(conn))
        count = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        dim = info.dim or 0
        texts = info.stores_text
        main = _Out(out)
        outs.append(main)
        keys_out = texts_out = None
        if fmt == "npy":
            keys_out = _Out(_sidecar(out, ".keys.txt"))
            outs.append(keys_out)
        if fmt in ("npy", "safetensors") and texts:
            texts_out = _Out(_sidecar(out, ".texts.jsonl"))
            outs.append(texts_out)
        sums = rowcheck.has_sums(conn)
        cur = conn.execute("SELECT key, vec, text, last_used, " + ("sum" if sums else "NULL")
                           + " FROM vectors ORDER BY key")
        with main.guard():  # a full disk: one line naming the file
            write = _writers[fmt](main.fh, count, dim, info, texts)
        while rows := cur.fetchmany(2048):
            damaged = [r for r in rows if not rowcheck.check((r[0], r[1], r[3], r[4]), dim, sums)]
            if damaged:  # checked as embed checks a hit: nothing damaged is exported
                raise EmbctlError(f"{store_file.name}: {plural(len(damaged), 'damaged row')} "
                                  "(their checksum does not match); run `embctl verify --repair`")
            rows = [r[:3] for r in rows]  # (key, vec, text), as the writers take them
            bad = [r for r in rows if len(r[1]) != dim * 4]
            if bad:
                raise EmbctlError(f"{store_file.name}: {plural(len(bad), 'vector')} of the wrong "
                                  "size; "
                                  "run `embctl verify --repair`")
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(-1, dim)
            with main.guard():
                write.rows(rows, matrix)
            if keys_out is not None:
                keys_out.write("".join(r[0].hex() + "\n" for r in rows).encode())
            if texts_out is not None:
                texts_out.write("".join(
                    json.dumps({"key": r[0].hex(), "text": r[2]}, ensure_ascii=False) + "\n"
                    for r in rows).encode())
        with main.guard():
            write.close()
        for o in outs:
            o.commit()
    except BaseException:
        for o in outs:
            o.discard()
        raise
    finally:
        conn.close()
    return {"path": str(out), "format": fmt, "vectors": count, "dim": dim,
            "namespace": info.ns_id, "texts": texts,
            "files": [str(o.path) for o in outs]}


class _Npy:
    def __init__(self, fh: IO[bytes], count: int, dim: int, info, texts: bool) -> None:
        self.fh = fh
        body = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({count}, {dim}), }}"
        total = 10 + len(body) + 1
        pad = (-total) % 64
        fh.write(b"\x93NUMPY\x01\x00" + (len(body) + pad + 1).to_bytes(2, "little")
                 + body.encode("latin1") + b" " * pad + b"\n")

    def rows(self, rows, matrix) -> None:
        self.fh.write(matrix.tobytes())

    def close(self) -> None:
        pass


class _Safetensors:
    def __init__(self, fh: IO[bytes], count: int, dim: int, info, texts: bool) -> None:
        self.fh = fh
        self.keys: list[bytes] = []
        vec_bytes = count * dim * 4
        header = {
            "embeddings": {"dtype": "F32", "shape": [count, dim], "data_offsets": [0, vec_bytes]},
            "keys": {"dtype": "U8", "shape": [count, 32],
                     "data_offsets": [vec_bytes, vec_bytes + count * 32]},
            "__metadata__": {"format": "embctl-vectors/1", "namespace": canonical(info.namespace),
                             "namespace_id": info.ns_id},
        }
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * ((-len(raw)) % 8)
        fh.write(len(raw).to_bytes(8, "little") + raw)

    def rows(self, rows, matrix) -> None:
        self.fh.write(matrix.tobytes())
        self.keys.extend(r[0] for r in rows)  # 32 bytes a vector: small next to the vectors

    def close(self) -> None:
        self.fh.write(b"".join(self.keys))


class _Jsonl:
    def __init__(self, fh: IO[bytes], count: int, dim: int, info, texts: bool) -> None:
        from embctl.embed.outputs import dumps_vector_factory

        self.fh = fh
        self.texts = texts
        self.dumps = dumps_vector_factory()

    def rows(self, rows, matrix) -> None:
        out = []
        for (key, _, text), row in zip(rows, matrix, strict=True):
            head = {"key": key.hex()}
            if self.texts:
                head["text"] = text
            out.append(json.dumps(head, ensure_ascii=False)[:-1].encode() + b', "embedding": '
                       + self.dumps(row) + b"}\n")
        self.fh.write(b"".join(out))

    def close(self) -> None:
        pass


class _Parquet:
    def __init__(self, fh: IO[bytes], count: int, dim: int, info, texts: bool) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UsageError("parquet export needs pyarrow: pip install 'embctl[parquet]'") \
                from None
        self.pa = pa
        self.dim = dim
        schema = pa.schema([("key", pa.string()), ("text", pa.string()),
                            ("embedding", pa.list_(pa.float32(), dim))],
                           metadata={"embctl.namespace": canonical(info.namespace)})
        self.writer = pq.ParquetWriter(fh, schema)
        self.schema = schema

    def rows(self, rows, matrix) -> None:
        pa = self.pa
        flat = pa.array(matrix.reshape(-1), type=pa.float32())
        table = pa.table({"key": [r[0].hex() for r in rows], "text": [r[2] for r in rows],
                          "embedding": pa.FixedSizeListArray.from_arrays(flat, self.dim)},
                         schema=self.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


_writers: dict[str, Callable[..., Any]] = {"npy": _Npy, "safetensors": _Safetensors,
                                           "jsonl": _Jsonl, "parquet": _Parquet}
