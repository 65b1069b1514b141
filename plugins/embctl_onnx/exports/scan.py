"""The ONNX exports as inventory rows, and their checks (standard library only).

One row per bucket (``repo@revision``, variant): status "ok" when its manifest reads, "broken"
when it does not, "incomplete" for the temporary folder of an export that was interrupted,
"stale" when a repair replaced a file it was made from (``exports.repair``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embctl.plugin import Entry, ItemCheck, files_size, last_used
from embctl_onnx.exports.layout import (
    TMP_PREFIX,
    VARIANTS,
    ManifestError,
    read_manifest,
    stale_files,
)

KIND = "onnx-export"


def _files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    except OSError:
        return []




def _repo_id(folder_name: str) -> str | None:
    """``models--org--name`` -> ``org/name`` (repo ids never contain '--')."""
    if not folder_name.startswith("models--"):
        return None
    return folder_name.removeprefix("models--").replace("--", "/")


def _entry(folder: Path, repo_id: str, revision: str, variant: str, status: str,
           **extra: Any) -> Entry:
    files = _files(folder)
    size = files_size(files, follow_links=False)
    return Entry(KIND, f"onnx:{repo_id}", repo_id, "onnx", revision, None, size,
                 str(folder), last_used=last_used(files), status=status,
                 extra={"variant": variant, "files": [p.name for p in files],
                        # as a model's pull record says it: ls shows the backend as onnx[int8]
                        "pull_options": [{"variant": variant}], **extra})


def export_entries(root: Path) -> list[Entry]:
    """Every bucket and interrupted export under ``root``."""
    entries: list[Entry] = []
    try:
        repos = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    for repo in repos:
        repo_id = _repo_id(repo.name)
        if repo_id is None:
            continue
        for rev in sorted(p for p in repo.iterdir() if p.is_dir() and not p.is_symlink()):
            for folder in sorted(p for p in rev.iterdir() if p.is_dir() and not p.is_symlink()):
                entries.extend(_bucket_entry(folder, repo_id, rev.name))
    return entries


def _bucket_entry(folder: Path, repo_id: str, revision: str) -> list[Entry]:
    name = folder.name
    if name.startswith(TMP_PREFIX):
        variant = name.removeprefix(TMP_PREFIX).split("-", 1)[0]
        return [_entry(folder, repo_id, revision, variant, "incomplete")]
    if name not in VARIANTS:
        return []
    try:
        manifest = read_manifest(folder)
    except ManifestError as exc:
        return [_entry(folder, repo_id, revision, name, "broken", error=str(exc))]
    stale = stale_files(folder)
    extra = {} if stale is None else {"stale": stale}
    return [_entry(folder, manifest.repo_id, manifest.revision, name,
                   "ok" if stale is None else "stale", sha256=manifest.sha256,
                   made=manifest.made, **extra)]


def matches(entry: Entry, model: Any | None, key: str | None) -> bool:
    """Whether ``onnx:REF`` (``model``; every revision unless it pins a commit) or ``key`` (a
    prefix of the export's sha256) names ``entry``."""
    if key is not None and not str(entry.extra.get("sha256", "")).startswith(key):
        return False
    if model is None:
        return True
    if entry.repo_id != model.repo_id or model.backend != "onnx":
        return False
    revision = getattr(model, "revision", None)
    if not revision or len(revision) < 7 or not all(c in "0123456789abcdef" for c in revision):
        return True  # a branch or tag: every revision of the repo
    return (entry.revision or "").startswith(revision)


@dataclass
class ExportCheck(ItemCheck):
    """The verdict on one export (a ``verify`` finding when not ok)."""

    outcome: str = ""  # what repair did: "exported again", "deleted"

    @property
    def path(self) -> str:
        return self.entry.path

    def lines(self) -> list[str]:
        where = f"{self.entry.ref}@{(self.entry.revision or '?')[:8]} " \
                f"({self.entry.extra.get('variant')} ONNX export {self.entry.path})"
        out = [f"{where}: {p}" for p in self.problems]
        if self.outcome:
            out.append(f"{where}: {self.outcome}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "ref": self.entry.ref, "revision": self.entry.revision,
                "variant": self.entry.extra.get("variant"), "path": self.entry.path,
                "ok": self.ok, "problems": self.problems, "repaired": self.repaired,
                "outcome": self.outcome}


def snapshot_of(cache_dir: Path, entry: Entry) -> Path | None:
    """The Hub cache snapshot an export was made from, when it is still there."""
    from embctl.plugin import repo_folder_name

    if not entry.repo_id or not entry.revision:
        return None
    path = cache_dir / repo_folder_name(entry.repo_id) / "snapshots" / entry.revision
    return path if os.path.isdir(path) else None
