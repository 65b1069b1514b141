"""Cached matrices for ``ls``, ``du``, ``rm`` and ``verify``.

Listing parses each file's JSON header with json/struct only (no numpy, no safetensors), so
``embctl ls`` stays fast.  Interrupted pulls (``.incomplete`` and ``.part<i>`` files whose
matrix is not there) are listed with status "incomplete", unreadable files as "broken".
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from embctl.plugin import Entry, files_size, last_used
from embctl_matrix.matrices.format import FormatError
from embctl_matrix.matrices.paths import matrices_dir
from embctl_matrix.matrices.store import (
    INCOMPLETE,
    SUFFIX,
    MatrixInfo,
    matrix_files,
    read_info,
)

if TYPE_CHECKING:
    from embctl.plugin import Model
    from embctl_matrix.matrices.verify import MatrixCheck

_PENDING = re.compile(rf"^(?P<stem>.+){re.escape(SUFFIX)}(?:\.part\d+)?(?:{INCOMPLETE})?$")




def _ok_entry(info: MatrixInfo) -> Entry:
    files = [info.path, *info.companions()]
    return Entry(
        kind="matrix", ref=info.ref, repo_id="+".join(info.sources), backend="matrix",
        revision="+".join(info.revisions), dim=info.shape[1], size_bytes=files_size(files),
        path=str(info.path), last_used=last_used(files), count=info.shape[0],
        extra={"key": info.key, "dtype": info.dtype, "shape": list(info.shape),
               "vocab_size": info.shape[0], "sources": info.sources, "tensors": info.tensors,
               "requested_revision": info.requested_revision, "sha256": info.sha256,
               "files": [p.name for p in files]},
    )


def _guess_ref(stem: str) -> tuple[str, str]:
    """(ref, repo_id) from a file stem ``<slug>.<key>`` (repo ids never contain '--')."""
    slug = stem.rsplit(".", 1)[0]
    repo_id = slug.replace("--", "/")
    return f"matrix:{repo_id}", repo_id


def matrix_entries(root: Path | None = None) -> list[Entry]:
    """One Entry (kind "matrix") per cached matrix or interrupted pull."""
    root = root or matrices_dir()
    if not root.is_dir():
        return []
    entries: list[Entry] = []
    pending: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.iterdir()):
        name = path.name
        if name.startswith(".") or not path.is_file():
            continue
        if name.endswith(SUFFIX):
            try:
                entries.append(_ok_entry(read_info(path)))
            except (OSError, FormatError) as exc:
                ref, repo_id = _guess_ref(name[: -len(SUFFIX)])
                entries.append(Entry("matrix", ref, repo_id, "matrix", None, None,
                                     files_size([path]), str(path), status="broken",
                                     extra={"key": name[: -len(SUFFIX)].rsplit(".", 1)[-1],
                                            "error": str(exc)}))
            continue
        match = _PENDING.match(name)
        if match and (name.endswith(INCOMPLETE) or ".part" in name):
            pending[match["stem"]].append(path)
    for stem, paths in sorted(pending.items()):
        if (root / f"{stem}{SUFFIX}").is_file():
            continue  # leftovers of a finished pull; counted by rm, not listed
        ref, repo_id = _guess_ref(stem)
        entries.append(Entry("matrix", ref, repo_id, "matrix", None, None, files_size(paths),
                             str(root / f"{stem}{SUFFIX}"), last_used=last_used(paths),
                             status="incomplete",
                             extra={"key": stem.rsplit(".", 1)[-1],
                                    "files": [p.name for p in paths]}))
    return entries


def matches(entry: Entry, model: Model | None, key: str | None) -> bool:
    """Whether ``matrix:A+B`` (``model``; every revision unless it pins one) or ``key`` (a
    prefix of the cache key) names ``entry``."""
    if key is not None and not str(entry.extra.get("key", "")).startswith(key):
        return False
    if model is None:
        return True
    if entry.repo_id != model.repo_id or entry.backend not in (None, model.backend):
        return False
    revision = model.revision
    if not revision or entry.status != "ok":
        return True
    if entry.extra.get("requested_revision") == revision:
        return True
    return len(revision) >= 7 and all(c.startswith(revision)
                                      for c in (entry.revision or "").split("+"))


def select_matrices(model: Model | None = None, key: str | None = None,
                    root: Path | None = None) -> list[Entry]:
    """Matrices of ``model`` (``matrix:A+B``; every revision unless ``@REV`` is given), or
    the one whose cache key starts with ``key``, or every matrix when both are None."""
    return [e for e in matrix_entries(root) if matches(e, model, key)]


def remove_matrices(model: Model | None = None, key: str | None = None, *,
                    dry_run: bool = False, root: Path | None = None) -> list[Entry]:
    """Delete the selected matrices with their .npy, tokenizer and partial files; return their
    entries, whose ``size_bytes`` is what was (or, with ``dry_run``, would be) freed."""
    done = []
    for entry in select_matrices(model, key, root):
        files = matrix_files(Path(entry.path))
        done.append(replace(entry, size_bytes=files_size(files)))
        if not dry_run:
            for p in files:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
    return done


def verify_matrices(model: Model | None = None, key: str | None = None, *,
                    repair: bool = False, root: Path | None = None) -> list[MatrixCheck]:
    """Re-hash each selected matrix's data against the sha256 in its header.

    With ``repair``, a bad matrix is deleted and pulled again (same sources and requested
    revision); stale ``.npy`` files are deleted (they are recreated on demand).
    """
    from embctl_matrix.matrices.verify import check_entry

    return [check_entry(e, repair=repair) for e in select_matrices(model, key, root)]
