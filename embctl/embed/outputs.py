"""Where ``embctl embed`` writes: JSONL (stdout or a file), a float32 ``.npy`` with ids beside
it, or a Parquet table.  A file is written under a temporary name and renamed into place on
success, so a failed run never leaves a half-written file."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from embctl.errors import EmbctlError, OutputClosed, UsageError
from embctl.outfile import OutputFile

if TYPE_CHECKING:
    import numpy as np

    from embctl.embed.records import Options, Record


def dumps_vector_factory() -> Callable[[np.ndarray], bytes]:
    try:
        import orjson

        opt = orjson.OPT_SERIALIZE_NUMPY

        def fast(row: np.ndarray) -> bytes:
            return orjson.dumps(row, option=opt)

        return fast
    except ImportError:

        def plain(row: np.ndarray) -> bytes:
            return json.dumps(row.tolist()).encode()

        return plain


class Writer:
    """Writes windows of records with their vectors; ``close(ok)`` finishes or discards."""

    def write(self, records: list[Record], matrix: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def close(self, ok: bool) -> None:  # pragma: no cover
        raise NotImplementedError


class _Target:
    """stdout, or a file written under a temporary name and renamed into place on success
    (a failed run leaves no half-written file; see embctl/outfile.py).  Write errors (a full
    disk) are one line naming the file, or stdout."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.out: OutputFile | None = None
        if path is None or path == "-":
            self.path = None
            self.fh: IO[bytes] = sys.stdout.buffer
        else:
            self.out = OutputFile(path)
            self.fh = self.out.fh

    @property
    def stdout(self) -> bool:
        return self.out is None

    @contextmanager
    def guard(self) -> Iterator[None]:
        """OSError while writing -> one line naming the file (a closed pipe stays as it is:
        ``embctl embed ... | head`` is not an error)."""
        if self.out is not None:
            with self.out.guard():
                yield
            return
        try:
            yield
        except BrokenPipeError:
            raise OutputClosed() from None
        except OSError as exc:
            raise EmbctlError(f"cannot write to stdout: {exc.strerror or exc}") from None

    def write(self, data: bytes | memoryview) -> None:
        with self.guard():
            self.fh.write(data)
            if self.out is None:
                self.fh.flush()

    def finish(self, ok: bool) -> None:
        if self.out is None:
            with self.guard():
                self.fh.flush()
        elif ok:
            self.out.commit()
        else:
            self.out.discard()


class JsonlWriter(Writer):
    def __init__(self, path: str | None, opts: Options) -> None:
        self.target = _Target(path)
        self.opts = opts
        self.dumps = dumps_vector_factory()

    def write(self, records: list[Record], matrix: np.ndarray) -> None:
        dumps = self.dumps
        out = []
        for record, row in zip(records, matrix, strict=True):
            vec = dumps(row)
            if record.raw is None:  # --lines
                head = json.dumps({self.opts.id_field: record.line,
                                   self.opts.text_field: record.text}, ensure_ascii=False)
                out.append(head[:-1].encode() + b', "embedding": ' + vec + b"}\n")
            elif "embedding" in record.obj or not record.obj:  # type: ignore[operator]
                obj = dict(record.obj or {})
                obj.pop("embedding", None)
                obj["embedding"] = None  # last, so the vector is spliced in before the "}"
                head = json.dumps(obj, ensure_ascii=False).encode()
                out.append(head[:-len(b"null}")] + vec + b"}\n")
            else:  # the object's own bytes, verbatim, with the vector spliced in
                out.append(record.raw[:-1] + b', "embedding": ' + vec + b"}\n")  # type: ignore[index]
        self.target.write(b"".join(out))

    def close(self, ok: bool) -> None:
        self.target.finish(ok)


def _record_id(record: Record, opts: Options) -> Any:
    if record.obj is not None and opts.id_field in record.obj:
        return record.obj[opts.id_field]
    return record.line


class NpyWriter(Writer):
    """A float32 .npy matrix streamed to disk (the header's shape is fixed up at the end),
    with ``<name>.ids.jsonl`` beside it: one id per row (the id field, else the line number)."""

    HEADER_LEN = 128

    def __init__(self, path: str, opts: Options, dim_hint: Callable[[], int]) -> None:
        if path in (None, "-"):
            raise UsageError("--format npy needs -o FILE (a .npy cannot be streamed to stdout)")
        self.target = _Target(path)
        self.opts = opts
        self.dim: int | None = None
        self.dim_hint = dim_hint
        self.rows = 0
        ids = Path(path)
        ids_path = str(ids.with_name(ids.name[:-4] if ids.name.endswith(".npy") else ids.name))
        ids_target = None
        try:
            ids_target = _Target(ids_path + ".ids.jsonl")
            self.target.write(b"\0" * self.HEADER_LEN)
        except BaseException:
            self.target.finish(False)
            if ids_target is not None:
                ids_target.finish(False)
            raise
        self.ids = ids_target

    def _header(self) -> bytes:
        body = (f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({self.rows}, {self.dim}), }}"
                .encode("latin1"))
        pad = self.HEADER_LEN - 10 - len(body) - 1
        return b"\x93NUMPY\x01\x00" + (self.HEADER_LEN - 10).to_bytes(2, "little") + body \
            + b" " * pad + b"\n"

    def write(self, records: list[Record], matrix: np.ndarray) -> None:
        import numpy as np

        self.dim = int(matrix.shape[1])
        self.rows += len(records)
        # The array itself is the buffer written: no copy of the matrix as bytes.
        self.target.write(np.ascontiguousarray(matrix, dtype="<f4").data)
        self.ids.write("".join(f"{v}\n" if type(v := _record_id(r, self.opts)) is int
                               else json.dumps(v, ensure_ascii=False) + "\n"
                               for r in records).encode())

    def close(self, ok: bool) -> None:
        try:
            if ok:
                if self.dim is None:
                    self.dim = self.dim_hint()
                with self.target.guard():
                    self.target.fh.seek(0)
                    self.target.fh.write(self._header())
            self.target.finish(ok)
        except BaseException:
            self.ids.finish(False)
            raise
        self.ids.finish(ok)


class ParquetWriter(Writer):
    """A table of id (string), line (int64) and embedding (fixed-size list of float32)."""

    def __init__(self, path: str, opts: Options) -> None:
        if path in (None, "-"):
            raise UsageError("--format parquet needs -o FILE")
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("parquet output needs pyarrow: pip install 'embctl[parquet]'") \
                from None
        self.target = _Target(path)
        self.opts = opts
        self.writer = None

    def write(self, records: list[Record], matrix: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = int(matrix.shape[1])
        ids = [v if isinstance(v := _record_id(r, self.opts), str) else json.dumps(v)
               for r in records]
        flat = pa.array(matrix.astype("<f4", copy=False).reshape(-1), type=pa.float32())
        table = pa.table({"id": pa.array(ids, pa.string()),
                          "line": pa.array([r.line for r in records], pa.int64()),
                          "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})
        with self.target.guard():
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.target.fh, table.schema)
            self.writer.write_table(table)

    def close(self, ok: bool) -> None:
        try:
            if self.writer is not None:
                with self.target.guard():
                    self.writer.close()
        except BaseException:
            self.target.finish(False)
            raise
        self.target.finish(ok)


def output_format(path: str | None, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path and path.endswith(".npy"):
        return "npy"
    if path and path.endswith(".parquet"):
        return "parquet"
    return "jsonl"


def make_writer(path: str | None, fmt: str, opts: Options,
                dim_hint: Callable[[], int]) -> Writer:
    if fmt == "npy":
        return NpyWriter(path, opts, dim_hint)  # type: ignore[arg-type]
    if fmt == "parquet":
        return ParquetWriter(path, opts)  # type: ignore[arg-type]
    return JsonlWriter(path, opts)
