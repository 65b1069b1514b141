"""Checking a cached matrix: size, sha256 of the data, its .npy companions; optional repair."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embctl.plugin import EmbctlError, Entry
from embctl_matrix.matrices.format import FormatError
from embctl_matrix.matrices.store import MatrixInfo, glob_escape, matrix_files, read_info

CHUNK = 8 << 20


@dataclass
class MatrixCheck:
    """The verdict on one cached matrix."""

    entry: Entry
    ok: bool
    problems: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def resolved(self) -> bool:
        """Nothing is left wrong: nothing was, or repair mended it."""
        return self.ok or self.repaired

    def lines(self) -> list[str]:
        """One line per problem, for people."""
        return [f"{self.entry.ref} (matrix {self.entry.path}): {p}" for p in self.problems]

    def to_json(self) -> dict[str, Any]:
        return {"kind": "matrix", "ref": self.entry.ref, "path": self.entry.path,
                "key": self.entry.extra.get("key"), "ok": self.ok, "problems": self.problems,
                "repaired": self.repaired}


def rehash(info: MatrixInfo) -> tuple[str, int]:
    """(sha256 of the data bytes, bytes found after the header); no use of the matrix, so
    read without moving its atime."""
    from embctl.plugin import open_noatime

    h = hashlib.sha256()
    got = 0
    with open_noatime(info.path) as f:
        f.seek(info.data_offset)
        while buf := f.read(CHUNK):
            h.update(buf)
            got += len(buf)
    return h.hexdigest(), got


def _npy_problems(info: MatrixInfo, repair: bool) -> list[str]:
    """An .npy whose header does not match the matrix is stale: it would feed wrong data."""
    problems = []
    for npy in sorted(info.path.parent.glob(f"{glob_escape(info.stem)}.*.npy")):
        if not _npy_shape_ok(npy, info):
            problems.append(f"{npy.name} does not match the matrix"
                            + (" (deleted; recreated on demand)" if repair else ""))
            if repair:
                npy.unlink(missing_ok=True)
    return problems


def _npy_shape_ok(path: Path, info: MatrixInfo) -> bool:
    import ast
    import struct

    from embctl.plugin import open_noatime

    try:
        with open_noatime(path) as f:
            if f.read(6) != b"\x93NUMPY":
                return False
            major = f.read(2)[0]
            n = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
            header = ast.literal_eval(f.read(n).decode("latin1"))
            data_start = f.tell()
        dtype = header["descr"].lstrip("<>|=")
        item = {"f2": 2, "f4": 4, "f8": 8}.get(dtype)
        return (tuple(header["shape"]) == tuple(info.shape) and item is not None and
                path.stat().st_size == data_start + info.shape[0] * info.shape[1] * item)
    except (OSError, ValueError, SyntaxError, KeyError, IndexError, struct.error):
        return False


def check_entry(entry: Entry, *, repair: bool = False) -> MatrixCheck:
    check = MatrixCheck(entry, ok=True)
    if entry.status == "incomplete":
        check.ok = False
        check.problems.append("interrupted pull; run `embctl pull "
                              f"{entry.ref}` to finish it, or `embctl rm` it")
        return check
    try:
        info = read_info(Path(entry.path))
    except (OSError, FormatError) as exc:
        check.ok = False
        check.problems.append(f"cannot be read: {exc}")
        return _repair(check, None) if repair else check
    digest, got = rehash(info)
    if got != info.nbytes:
        check.ok = False
        check.problems.append(f"data is {got:,} bytes, expected {info.nbytes:,}")
    elif digest != info.sha256:
        check.ok = False
        check.problems.append(f"sha256 mismatch: {digest[:12]}... != {info.sha256[:12]}...")
    if not check.ok:
        return _repair(check, info) if repair else check
    npy = _npy_problems(info, repair)
    if npy:
        check.problems += npy
        check.ok = repair
        check.repaired = repair
    return check


def _repair(check: MatrixCheck, info: MatrixInfo | None) -> MatrixCheck:
    """Delete the bad matrix and pull it again (needs the network)."""
    for p in matrix_files(Path(check.entry.path)):
        p.unlink(missing_ok=True)
    if info is None:
        check.problems.append("deleted; run `embctl pull` for it again")
        return check
    from embctl.plugin import Model, get_backend

    backend = check.entry.backend or ""
    model = Model(info.ref, backend, "+".join(info.sources), info.requested_revision)
    tensor = ",".join(info.tensors)
    try:
        get_backend(backend).pull(model, {"cache_dir": None, "quiet": True, "tensor": tensor})
    except EmbctlError as exc:
        check.problems.append(f"deleted; pulling it again failed: {exc}")
        return check
    check.problems.append("deleted and pulled again")
    check.ok = check.repaired = True
    return check
