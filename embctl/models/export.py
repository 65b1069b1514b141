"""``embctl export REF --to DIR``: a cached model as a plain directory, for offline machines.

The Hugging Face cache is a tree of symlinks into content-addressed blobs; copying it with
``cp -r`` or a USB stick that cannot hold links breaks it.  The export resolves every link into a
regular file, so ``SentenceTransformer(DIR)`` loads it with no network and ``embctl pull REF
--from DIR`` imports it into the cache on the other machine.  A manifest
(``.embctl-export.json``: repo id, revision, sha256 and size of every file) travels with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from embctl.backends import Model
from embctl.errors import EmbctlError, UsageError
from embctl.guard import EXPORT_MANIFEST as MANIFEST
from embctl.guard import check_replaceable
from embctl.models.tree import model_files
from embctl.paths import check_folder


@dataclass
class ModelExport:
    ref: str
    repo_id: str
    revision: str | None
    path: str
    files: dict[str, int] = field(default_factory=dict)  # path -> size
    seconds: float = 0.0

    @property
    def size_bytes(self) -> int:
        return sum(self.files.values())

    def to_json(self) -> dict:
        return {"ref": self.ref, "repo_id": self.repo_id, "revision": self.revision,
                "path": self.path, "files": sorted(self.files), "size_bytes": self.size_bytes,
                "seconds": round(self.seconds, 3)}


def source_dir(model: Model, cache_dir: Path) -> tuple[Path, Path, str | None]:
    """The model's snapshot directory in the cache (or its local directory), the folder its
    links may point into (the repo folder, for the blobs), and its revision."""
    from embctl.models.heads import commit_for
    from embctl.models.hub import repo_dir

    if model.local_path:
        return Path(model.local_path), Path(model.local_path), None
    storage = repo_dir(cache_dir, model.repo_id)
    commit = commit_for(model, cache_dir)
    snapshot = storage / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        from embctl.models.lookup import did_you_mean

        hint = did_you_mean(model.ref, cache_dir, every_alias=False)
        raise EmbctlError(f"{model.ref}: not in the cache" + (
            hint or f"; run `embctl pull {model.ref}` first"))
    return snapshot, storage, commit


def _copy(src: Path, dest: Path) -> str:
    """Copy src to dest; return the sha256 of what was copied."""
    h = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(1 << 20):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def _blob_name(real: Path, storage: Path) -> str | None:
    """The cache blob a snapshot file resolves to: the Hub's etag for it, kept in the manifest
    so an import names its blobs exactly as a download would (``verify --remote`` agrees)."""
    from embctl.models.hashing import hash_kind

    if real.parent == Path(os.path.realpath(storage / "blobs")) and hash_kind(real.name):
        return real.name
    return None


def _backend_files(model: Model, snapshot: Path, options: dict | None) -> dict[str, Path]:
    from embctl.registry import backends

    backend = backends().get(model.backend)
    if backend is None:
        return {}
    return {rel: Path(p) for rel, p in backend.export_files(model, snapshot,
                                                            dict(options or {})).items()}


def export_model(model: Model, cache_dir: Path, dest: Path, *, force: bool = False,
                 follow_links: bool = False, options: dict | None = None) -> ModelExport:
    """``_export_model``, holding a cached model in use meanwhile (and recording the use)."""
    hold = None
    from embctl.paths import repo_folder_name

    if not model.local_path and model.repo_id and (
            Path(cache_dir) / repo_folder_name(model.repo_id)).is_dir():
        from embctl.models.uses import use_model

        hold = use_model(cache_dir, model.repo_id)
    try:
        return _export_model(model, cache_dir, dest, force=force, follow_links=follow_links,
                             options=options)
    finally:
        if hold is not None:
            os.close(hold)


def _export_model(model: Model, cache_dir: Path, dest: Path, *, force: bool = False,
                  follow_links: bool = False, options: dict | None = None) -> ModelExport:
    """Write the model's files as regular files into ``dest`` (created atomically: a failed
    export leaves no half-written directory).  ``dest`` must be new, empty, or (with ``force``)
    an earlier export holding nothing else, and never touch a cache (:mod:`embctl.guard`).
    The backend's ``export_files(model, snapshot, options)`` adds what it keeps outside the
    snapshot (and checks the files ``options`` need are there)."""
    start = time.monotonic()
    src, bound, revision = source_dir(model, cache_dir)
    dest = Path(os.path.realpath(dest.expanduser()))
    if dest.exists() and not dest.is_dir():  # a device (/dev/full): never replaced, even --force
        raise UsageError(f"--to {dest}: exists and is not a folder")
    check_folder(dest, "--to")  # not under a file
    replace = check_replaceable(dest, force=force, extra=[cache_dir])
    real_src = Path(os.path.realpath(src))
    if dest == real_src or real_src in dest.parents or dest in real_src.parents:
        raise EmbctlError(f"--to {dest}: inside or around the model's own folder {src}")
    files = model_files(src, bound=bound, follow_links=follow_links, label=f"{model.ref} ({src})",
                        broken_hint="run `embctl verify --repair`" if revision else "")
    files.update(_backend_files(model, src, options))
    if not files:
        raise EmbctlError(f"{model.ref}: {src} holds no files to export")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    result = ModelExport(model.ref, model.repo_id, revision, str(dest))
    manifest = {"format": "embctl-model-export/1", "ref": model.ref, "backend": model.backend,
                "repo_id": model.repo_id, "revision": revision, "exported": time.time(),
                "files": {}}
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        for rel, real in files.items():
            sha = _copy(real, tmp / rel)
            size = (tmp / rel).stat().st_size
            result.files[rel] = size
            manifest["files"][rel] = {"size": size, "sha256": sha}
            blob = _blob_name(real, bound) if revision else None
            if blob:
                manifest["files"][rel]["blob"] = blob
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if replace:
            old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)  # a missing or empty folder
    except OSError as exc:
        raise EmbctlError(f"--to {dest}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.monotonic() - start
    return result
