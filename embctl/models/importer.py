"""``embctl pull REF --from DIR``: put a local model directory into the cache under REF.

The result is laid out exactly as huggingface_hub lays out a download (blobs named by content
hash, a snapshot of relative symlinks, ``refs/main``), so ``SentenceTransformer(REF)`` loads it
offline, and ``verify`` checks it like any other model.  Blob names follow the Hub's etags:
sha256 for large/LFS files, git's blob sha1 for small ones.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from embctl.backends import Backend, Model
from embctl.errors import EmbctlError
from embctl.models import records
from embctl.models.download import link_blob
from embctl.models.hashing import blob_name_for
from embctl.models.hub import is_commit, repo_dir, write_ref
from embctl.models.pull import PullResult, select
from embctl.models.safefs import check_file, make_dirs


def _walk(root: Path) -> list[str]:
    paths = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            full = Path(folder) / name
            if full.is_file():
                paths.append(full.relative_to(root).as_posix())
    return paths


def import_dir(model: Model, backend: Backend, cache_dir: Path, source: Path, *,
               include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> PullResult:
    start = time.monotonic()
    source = source.expanduser()
    if not source.is_dir():
        raise EmbctlError(f"--from {source}: not a directory")
    paths = _walk(source)
    wanted = select(backend, paths, include, exclude)
    if not any(p.endswith("config.json") for p in wanted):
        raise EmbctlError(f"--from {source}: no config.json found; not a model directory")
    storage = repo_dir(cache_dir, model.repo_id)
    blobs = make_dirs(cache_dir, storage / "blobs")
    make_dirs(cache_dir, storage / "snapshots")
    names: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for path in wanted:
        src = source / path
        names[path], sizes[path] = _store_blob(src, blobs)
    listing = "\n".join(f"{p} {names[p]}" for p in sorted(names))
    commit = hashlib.sha1(b"embctl import\n" + listing.encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    for path, blob in names.items():
        link_blob(blobs / blob, snapshot / Path(*path.split("/")), cache_dir)
    branch = model.revision if model.revision and not is_commit(model.revision) else "main"
    write_ref(storage, branch, commit)
    records.update_record(model.repo_id, cache_dir, backend=model.backend, ref=model.ref,
                          commit=commit, files=sizes, complete=True)
    total = sum(sizes.values())
    return PullResult(model.ref, model.repo_id, model.backend, commit, sorted(names), total,
                      downloaded_files=len(names), downloaded_bytes=0,
                      seconds=time.monotonic() - start, path=str(snapshot),
                      extra={"imported_from": str(source.resolve())})


def _store_blob(src: Path, blobs: Path) -> tuple[str, int]:
    """Copy src into blobs/ under its content-hash name (temp file + rename). -> (name, size)"""
    size = src.stat().st_size
    name = blob_name_for(src.name, src, size)
    dest = check_file(blobs / name)
    if dest.exists() and dest.stat().st_size == size:
        return name, size
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".import-", suffix=".incomplete")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return name, size
