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
from embctl.paths import check_folder

MANIFEST = ".embctl-export.json"


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


def source_dir(model: Model, cache_dir: Path) -> tuple[Path, str | None]:
    """The model's snapshot directory in the cache (or its local directory) and revision."""
    from embctl.models.hub import is_commit, read_ref, repo_dir

    if model.local_path:
        return Path(model.local_path), None
    storage = repo_dir(cache_dir, model.repo_id)
    commit = model.revision if is_commit(model.revision) else read_ref(
        storage, model.revision or "main")
    snapshot = storage / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        raise EmbctlError(f"{model.ref}: not in the cache; run `embctl pull {model.ref}` first")
    return snapshot, commit


def _files(root: Path) -> list[str]:
    out = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                out.append((Path(folder) / name).relative_to(root).as_posix())
    return out


def _copy(src: Path, dest: Path) -> str:
    """Copy src (following links) to dest; return the sha256 of what was copied."""
    if not src.exists():
        raise EmbctlError(f"{src}: broken link in the cache; run `embctl verify --repair`")
    h = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(1 << 20):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def export_model(model: Model, cache_dir: Path, dest: Path, *, force: bool = False) -> ModelExport:
    """Write the model's files as regular files into ``dest`` (created atomically: a failed
    export leaves no half-written directory).  An existing non-empty ``dest`` needs ``force``."""
    start = time.monotonic()
    src, revision = source_dir(model, cache_dir)
    dest = dest.expanduser().absolute()
    if dest.exists() and not dest.is_dir():  # a device (/dev/full): never replaced, even --force
        raise UsageError(f"--to {dest}: exists and is not a folder")
    check_folder(dest, "--to")  # not under a file
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())) and not force:
        raise EmbctlError(f"--to {dest}: exists and is not empty (use --force to replace it)")
    if dest == src or src in dest.parents:
        raise EmbctlError(f"--to {dest}: inside the model's own directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    result = ModelExport(model.ref, model.repo_id, revision, str(dest))
    manifest = {"format": "embctl-model-export/1", "ref": model.ref, "backend": model.backend,
                "repo_id": model.repo_id, "revision": revision, "exported": time.time(),
                "files": {}}
    try:
        paths = _files(src)
        if not paths:
            raise EmbctlError(f"{model.ref}: the cached snapshot {src} holds no files")
        for rel in paths:
            sha = _copy(src / rel, tmp / rel)
            size = (tmp / rel).stat().st_size
            result.files[rel] = size
            manifest["files"][rel] = {"size": size, "sha256": sha}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except OSError as exc:
        raise EmbctlError(f"--to {dest}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.monotonic() - start
    return result
