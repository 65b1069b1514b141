"""Pull records: what each pull meant to fetch, kept beside the model in its cache folder.

The Hugging Face cache cannot tell a complete snapshot from a partial one (hf #4419).  Before a
pull downloads anything it records the commit and the files it wants; when every file is in
place the record is marked complete.  ``ls`` uses this to flag partial models, ``verify``
to know which files a model should have, and both to know which backend pulled it.

The record is ``models--org--name/.embctl-pull.json``: it moves with the cache, and whatever
deletes the repo folder (``hf cache rm`` included) deletes it too.  huggingface_hub ignores it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embctl.paths import repo_folder_name

RECORD_NAME = ".embctl-pull.json"


def record_path(repo_id: str, cache_dir: Path) -> Path:
    return Path(cache_dir) / repo_folder_name(repo_id) / RECORD_NAME


def read_record(repo_id: str, cache_dir: Path) -> dict[str, Any]:
    try:
        with open(record_path(repo_id, cache_dir)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    from embctl.jsonfile import write_json_atomic
    from embctl.models.safefs import check_file, make_dirs

    make_dirs(path.parent.parent, path.parent)
    check_file(path)
    write_json_atomic(path, data, indent=1)


def _edit(repo_id: str, cache_dir: Path, change: Callable[[dict[str, Any]], bool]) -> None:
    """Read the record, ``change`` it and write it, under the repo's pull lock; ``change``
    returns False when it changed nothing (nothing is written).  Best effort: a record that
    cannot be written is a warning, never a failed pull."""
    from filelock import FileLock

    from embctl.models.holds import PULL_LOCK, lock_path
    from embctl.models.safefs import lock_file, make_dirs

    path = record_path(repo_id, cache_dir)
    try:
        make_dirs(Path(cache_dir), path.parent)
        lock = lock_path(cache_dir, repo_id, PULL_LOCK)
        with FileLock(lock_file(Path(cache_dir), lock), timeout=30):
            data = read_record(repo_id, cache_dir)
            if change(data):
                _write_atomic(path, data)
    except OSError as exc:
        from embctl.console import warn

        warn(f"could not write pull record {path}: {exc}")


def update_record(
    repo_id: str,
    cache_dir: Path,
    *,
    backend: str,
    ref: str,
    commit: str,
    files: dict[str, int],
    complete: bool,
    options: dict[str, Any] | None = None,
    wanted: list[str] | None = None,
    listing: list[str] | None = None,
) -> None:
    """Record (or mark complete) one revision of a pull. Best effort: never fails a pull.
    ``options``: the backend's pull options (``{"variant": "int8"}``), added to the
    revision's list of those pulled (``ls`` shows them; an offline pull needs them).
    ``wanted``: the files this backend's pull wanted, kept per backend when complete (``ls``
    shows a row per backend of a revision).  ``listing``: every path of the revision on the
    Hub (an offline pull for another backend knows from it what that backend would fetch)."""

    def change(data: dict[str, Any]) -> bool:
        data.update(repo_id=repo_id, backend=backend, ref=ref)
        revisions = data.setdefault("revisions", {})
        entry = revisions.get(commit, {})
        entry.update(files=files, complete=complete or entry.get("complete", False))
        if listing is not None:
            entry["listing"] = listing
        if complete and wanted is not None:
            entry.setdefault("backends", {})[backend] = {"ref": ref, "files": sorted(wanted)}
        if options is not None:  # per backend: st and onnx pulls of one repo differ
            pulled = entry.setdefault("pull_options", {}).setdefault(backend, [])
            if options not in pulled:
                pulled.append(options)
        entry["updated_at"] = time.time()
        revisions[commit] = entry
        return True

    _edit(repo_id, cache_dir, change)


def pinned(record: dict[str, Any], backend: str, branch: str) -> str | None:
    """The commit ``backend`` uses for ``branch`` when it is not the branch's ref: a pull for
    ``backend`` that could not move the branch without breaking another backend's model."""
    commit = record.get("pins", {}).get(branch, {}).get(backend)
    return commit if isinstance(commit, str) else None


def set_pin(repo_id: str, cache_dir: Path, backend: str, branch: str,
            commit: str | None) -> None:
    """Pin ``backend``'s ``branch`` to ``commit`` (None: unpin, the branch's ref applies)."""

    def change(data: dict[str, Any]) -> bool:
        pins = data.setdefault("pins", {}).setdefault(branch, {})
        if commit is None:
            return pins.pop(backend, None) is not None
        pins[backend] = commit
        return True

    _edit(repo_id, cache_dir, change)


def forget(repo_id: str, cache_dir: Path, commit: str | None = None) -> None:
    """Drop the record of one revision, or of the whole repo."""
    path = record_path(repo_id, cache_dir)
    if commit is None:
        path.unlink(missing_ok=True)
        return
    data = read_record(repo_id, cache_dir)
    if data.get("revisions", {}).pop(commit, None) is not None:
        _write_atomic(path, data)
