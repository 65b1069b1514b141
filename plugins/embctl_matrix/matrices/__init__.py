"""Token-embedding matrices extracted from LLM checkpoints, cached under EMBCTL_HOME.

The Python API (numpy is imported only when these are called)::

    from embctl_matrix.matrices import pull_matrix, load_matrix, npy_path

    pull_matrix("matrix:Qwen/Qwen2.5-0.5B")                 # range-reads only the tensor
    m = load_matrix("matrix:Qwen/Qwen2.5-0.5B")             # read-only memmap, shared by workers
    m = load_matrix("matrix:Qwen/Qwen2.5-0.5B", mmap=False) # in memory
    path = npy_path("matrix:Qwen/Qwen2.5-0.5B")             # for np.load(path, mmap_mode="r")

Modules: ``paths`` and ``format`` (safetensors headers) are stdlib only; ``store`` (naming,
metadata, lookup), ``writer`` (.incomplete + atomic rename), ``arrays`` (numpy views, .npy,
export), ``scan`` (ls/du/rm), ``verify``.  Fetching is ``embctl_matrix.fetch``; the store
adapter for ls, du, rm and verify is ``embctl_matrix.matrix_store``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["export_matrix", "load_matrix", "matrix_info", "npy_path", "pull_matrix"]


def load_matrix(ref: str, *, mmap: bool = True, dtype: str | None = None,
                tensor: str | None = None) -> np.ndarray:
    """A cached matrix as a numpy array (see :func:`embctl_matrix.matrices.arrays.load_matrix`)."""
    from embctl_matrix.matrices.arrays import load_matrix as _load

    return _load(ref, mmap=mmap, dtype=dtype, tensor=tensor)


def npy_path(ref: str, *, dtype: str | None = None) -> Path:
    """An ``.npy`` of the matrix (created on first use) for ``np.load(mmap_mode="r")``."""
    from embctl_matrix.matrices.arrays import npy_path as _npy

    return _npy(ref, dtype=dtype)


def export_matrix(ref: str, output: str | Path, *, dtype: str | None = None) -> dict[str, Any]:
    """Write the matrix to ``FILE.npy`` or ``FILE.safetensors``."""
    from embctl_matrix.matrices.arrays import export_matrix as _export

    return _export(ref, output, dtype=dtype)


def matrix_info(ref: str) -> dict[str, Any]:
    """Sources, revisions, tensor names, dtype, shape, sha256 and path of a cached matrix."""
    from embctl_matrix.matrices.store import describe, require_matrix

    return describe(require_matrix(ref))


def pull_matrix(ref: str, *, tensor: str | None = None, quiet: bool = True,
                cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Fetch a matrix (``matrix:A[+B][@REV]``) into the cache; return the pull summary."""
    from embctl.plugin import get_backend, resolve

    text = ref if ref.startswith("matrix:") else f"matrix:{ref}"
    model = resolve(text)
    return get_backend("matrix").pull(model, {"cache_dir": cache_dir, "quiet": quiet,
                                              "tensor": tensor})
