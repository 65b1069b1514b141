"""Where ONNX exports live and what their manifest says (standard library only: ``ls`` and
``du`` import it).

    EMBCTL_HOME/onnx-exports/v1/                       the store's root (layout version 1)
      models--org--name/<revision>/<variant>/          one export: a bucket
        model.onnx                                     the graph (and any external data)
        manifest.json                                  each file's sha256 and size, written last
        stale.json                                     only when a repair replaced a file it
                                                       was made from and it could not be
                                                       made again: nothing uses it then
      models--org--name/<revision>/.tmp-<variant>-*    an export under way (or interrupted)
      .locks/models--org--name/<revision>-<variant>.lock

A bucket is written in full in a temporary folder, then renamed into place: a bucket that
exists is complete, and an interrupted export leaves only a ``.tmp-`` folder, which nothing
reads and the next export of the same bucket (or ``rm --prune``) deletes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embctl.plugin import embctl_home, open_noatime, repo_folder_name

LAYOUT = "v1"
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
STALE = "stale.json"
VARIANTS = ("fp32", "int8")
TMP_PREFIX = ".tmp-"
#: A revision as a folder name: a commit, or a local directory's ``local-<fingerprint>``.
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
CHUNK = 8 << 20


def exports_dir() -> Path:
    """The store's root, ``EMBCTL_HOME/onnx-exports/v1``."""
    return embctl_home() / "onnx-exports" / LAYOUT


def check_key(repo_id: str, revision: str, variant: str) -> None:
    """Refuse what cannot name a bucket (a path could escape the store otherwise)."""
    parts = repo_id.split("/")
    if not 1 <= len(parts) <= 2 or not all(_REPO_PART.fullmatch(p) and ".." not in p
                                          for p in parts):
        raise ValueError(f"not a repo id: {repo_id!r}")
    if not _REVISION.fullmatch(revision) or ".." in revision:
        raise ValueError(f"not a revision: {revision!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")


def revision_dir(repo_id: str, revision: str, root: Path | None = None) -> Path:
    return (root or exports_dir()) / repo_folder_name(repo_id) / revision


def bucket_dir(repo_id: str, revision: str, variant: str, root: Path | None = None) -> Path:
    """The folder of one export (which exists only once the export is complete)."""
    check_key(repo_id, revision, variant)
    return revision_dir(repo_id, revision, root) / variant


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open_noatime(path) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_text(path: Path) -> str:
    """A small file of a bucket, read without moving its atime: ``ls`` and ``verify`` looking
    at an export are no use of it (its ``last_used``, docs/cache.md)."""
    with open_noatime(path) as fh:
        return fh.read().decode("utf-8")


def describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256", "size"}}`` of every file in ``folder`` but the manifest."""
    return {p.name: {"sha256": sha256_of(p), "size": p.stat().st_size}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}


@dataclass(frozen=True)
class Manifest:
    """A bucket's ``manifest.json``."""

    repo_id: str
    revision: str
    variant: str
    files: dict[str, dict[str, Any]]  # name -> {"sha256": str, "size": int}
    made: dict[str, Any]  # how: the tool versions, opset, inputs, quantization
    created: float

    @property
    def sha256(self) -> str:
        return str(self.files[MODEL_FILE]["sha256"])

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.files.values())

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "repo_id": self.repo_id, "revision": self.revision,
                "variant": self.variant, "files": self.files, "made": self.made,
                "created": self.created}


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or does not describe its bucket."""


def read_manifest(bucket: Path) -> Manifest:
    try:
        data = json.loads(_read_text(bucket / MANIFEST))
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{MANIFEST} cannot be read: {exc}") from None
    try:
        files = {str(k): {"sha256": str(v["sha256"]), "size": int(v["size"])}
                 for k, v in dict(data["files"]).items()}
        manifest = Manifest(str(data["repo_id"]), str(data["revision"]), str(data["variant"]),
                            files, dict(data.get("made") or {}), float(data.get("created", 0)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"{MANIFEST} is malformed: {exc!r}") from None
    if MODEL_FILE not in files:
        raise ManifestError(f"{MANIFEST} lists no {MODEL_FILE}")
    if manifest.variant != bucket.name:
        raise ManifestError(f"{MANIFEST} is for variant {manifest.variant}, not {bucket.name}")
    return manifest


def write_manifest(bucket: Path, manifest: Manifest) -> None:
    """Written into the temporary folder, last, then flushed to disk with the files."""
    import os

    for path in bucket.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    with open(bucket / MANIFEST, "w", encoding="utf-8") as fh:
        json.dump(manifest.to_json(), fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def size_matches(bucket: Path, manifest: Manifest) -> bool:
    """Every listed file is there with its size (a cheap check; ``verify`` hashes them)."""
    try:
        return all((bucket / name).stat().st_size == info["size"]
                   for name, info in manifest.files.items())
    except OSError:
        return False


def stale_files(bucket: Path) -> list[str] | None:
    """The repo files whose repair left this export stale (``STALE``), or None when it is
    not stale."""
    try:
        data = json.loads(_read_text(bucket / STALE))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return []  # there, but unreadable: stale all the same
    files = data.get("repaired") if isinstance(data, dict) else None
    return [str(f) for f in files] if isinstance(files, list) else []


def mark_stale(bucket: Path, paths: list[str]) -> None:
    """Mark an export stale: made from ``paths`` (repo files), which a repair replaced."""
    import os
    import time

    tmp = bucket / f"{TMP_PREFIX}{STALE}"
    tmp.write_text(json.dumps({"repaired": sorted(paths), "at": time.time()}), encoding="utf-8")
    os.replace(tmp, bucket / STALE)
