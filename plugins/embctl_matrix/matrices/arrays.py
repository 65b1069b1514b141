"""Matrices as numpy arrays: in memory, memory-mapped, converted, exported.

bfloat16 has no numpy dtype: its bytes are read as uint16 and widened to float32 by shifting
them into the high half of a uint32 (exact: every bf16 value is a float32).  Everything is
done in row chunks, so converting or exporting a matrix never holds two copies of it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from embctl.plugin import EmbctlError, UsageError
from embctl_matrix.matrices.format import ITEMSIZE
from embctl_matrix.matrices.store import NUMPY_DTYPE, MatrixInfo, require_matrix

CHUNK_BYTES = 16 * 1024 * 1024
RAW_DTYPE = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """uint16 bf16 bit patterns -> float32 values (exact)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def to_float(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Raw stored values (uint16 for BF16) as float32, or native float for the rest."""
    if dtype == "BF16":
        return bf16_to_f32(raw)
    return raw


def _target(info: MatrixInfo, dtype: str | None) -> str:
    name = np.dtype(dtype).name if dtype is not None else NUMPY_DTYPE.get(info.dtype)
    if name not in ("float16", "float32", "float64"):
        raise UsageError(f"unsupported dtype {dtype or info.dtype!r} (float16, float32, float64)")
    return name


def raw_memmap(info: MatrixInfo) -> np.memmap:
    """The stored bytes, read-only, without conversion (uint16 for BF16)."""
    return np.memmap(info.path, dtype=RAW_DTYPE[info.dtype], mode="r",
                     offset=info.data_offset, shape=info.shape)


def iter_rows(info: MatrixInfo, dtype: str, chunk_bytes: int = CHUNK_BYTES):
    """Yield (start, float array) row chunks, converted to ``dtype``, read with plain I/O."""
    rows, dim = info.shape
    row_bytes = dim * ITEMSIZE[info.dtype]
    step = max(1, chunk_bytes // max(row_bytes, 1))
    with open(info.path, "rb") as f:
        f.seek(info.data_offset)
        for start in range(0, rows, step):
            n = min(step, rows - start)
            buf = f.read(n * row_bytes)
            if len(buf) != n * row_bytes:
                raise EmbctlError(f"{info.path}: truncated matrix data")
            raw = np.frombuffer(buf, dtype=RAW_DTYPE[info.dtype]).reshape(n, dim)
            yield start, to_float(raw, info.dtype).astype(dtype, copy=False)


def ensure_npy(info: MatrixInfo, dtype: str | None = None) -> Path:
    """Create ``<stem>.<dtype>.npy`` if missing (chunked, atomic); return its path."""
    name = _target(info, dtype)
    path = info.npy_path(name)
    if path.is_file() and _npy_ok(path, info.shape, name):
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=name, shape=info.shape)
        for start, block in iter_rows(info, name):
            out[start:start + len(block)] = block
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _npy_ok(path: Path, shape: tuple[int, int], dtype: str) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return tuple(arr.shape) == tuple(shape) and arr.dtype == np.dtype(dtype)


def open_matrix(info: MatrixInfo, *, mmap: bool = True, dtype: str | None = None) -> np.ndarray:
    name = _target(info, dtype)
    if not mmap:
        out = np.empty(info.shape, dtype=name)
        for start, block in iter_rows(info, name):
            out[start:start + len(block)] = block
        return out
    if NUMPY_DTYPE[info.dtype] == name and info.dtype != "BF16":
        return raw_memmap(info)  # stored as asked: map the cache file itself, no copy on disk
    return np.load(ensure_npy(info, name), mmap_mode="r")


def load_matrix(ref: str, *, mmap: bool = True, dtype: str | None = None,
                tensor: str | None = None) -> np.ndarray:
    """A cached matrix as a numpy array.

    ``ref`` is ``matrix:ORG/NAME[+ORG2/NAME2][@REV]``, a cache key prefix or a file path.
    ``mmap=True`` returns a read-only memory map that worker processes share through the page
    cache (F32/F16 map the cache file itself; BF16, which numpy cannot hold, maps a float32
    ``.npy`` created on first use).  ``mmap=False`` reads it into memory.  ``dtype`` is
    float16/float32/float64; by default the stored type, with BF16 widened to float32.
    """
    return open_matrix(require_matrix(ref, tensor=tensor), mmap=mmap, dtype=dtype)


def npy_path(ref: str, *, dtype: str | None = None) -> Path:
    """The path of the matrix as an ``.npy`` (created on demand) for np.load(mmap_mode="r")."""
    return ensure_npy(require_matrix(ref), dtype)


def export_matrix(ref: str, output: Path | str, *, dtype: str | None = None) -> dict:
    """Write the matrix to ``FILE.npy`` or ``FILE.safetensors``; return a summary."""
    import shutil

    info = require_matrix(ref)
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".npy", ".safetensors"):
        raise UsageError(f"{output}: export writes .npy or .safetensors files")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".npy":
            name = _target(info, dtype)
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=name, shape=info.shape)
            for start, block in iter_rows(info, name):
                out[start:start + len(block)] = block
            out.flush()
            del out
            written = name
        elif dtype is None or _safetensors_dtype(dtype) == info.dtype:
            shutil.copyfile(info.path, tmp)  # stored bytes, header and metadata as cached
            written = info.dtype
        else:
            written = _export_converted(info, tmp, _safetensors_dtype(dtype))
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return {"ref": info.ref, "path": str(output), "dtype": written, "shape": list(info.shape),
            "size_bytes": output.stat().st_size}


def _safetensors_dtype(dtype: str) -> str:
    names = {"float16": "F16", "float32": "F32", "float64": "F64", "bfloat16": "BF16"}
    key = str(dtype).lower()
    if key not in names:
        raise UsageError(f"unsupported dtype {dtype!r} (float16, float32, float64, bfloat16)")
    return names[key]


def _export_converted(info: MatrixInfo, tmp: Path, st_dtype: str) -> str:
    from embctl_matrix.matrices.format import encode_header

    if st_dtype == "BF16":
        raise UsageError("conversion to bfloat16 is not supported; export as stored instead")
    meta = dict(info.metadata)
    meta["dtype"] = st_dtype
    h = hashlib.sha256()
    np_name = {"F16": "float16", "F32": "float32", "F64": "float64"}[st_dtype]
    with open(tmp, "wb") as f:
        header = encode_header("embeddings", st_dtype, list(info.shape),
                               {**meta, "sha256": "0" * 64})
        f.write(header)
        for _, block in iter_rows(info, np_name):
            data = np.ascontiguousarray(block).tobytes()
            h.update(data)
            f.write(data)
        f.seek(0)
        f.write(encode_header("embeddings", st_dtype, list(info.shape),
                              {**meta, "sha256": h.hexdigest()}))
    return st_dtype
