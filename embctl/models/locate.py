"""Finding a model's files for ``Backend.load``: a core service every Hub backend uses.

``locate`` answers from the cache when the revision is there, else pulls the model exactly as
``embctl pull`` would (only the files the backend's ``select_files`` wants, hashes checked),
unless HF_HUB_OFFLINE=1 or the Hub cannot be reached: then ``HubUnreachable``, which embed
turns into "not cached; pull it first".  A local model directory given as the reference is
used as it is, identified by a fingerprint of its files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embctl.backends import Model
from embctl.errors import EmbctlError

#: Files whose presence marks a usable snapshot, unless the backend names its own.
DEFAULT_MARKERS = ("config.json", "modules.json")


def cached_snapshot(model: Model, cache_dir: Path,
                    markers: Sequence[str] = DEFAULT_MARKERS) -> tuple[Path, str] | None:
    """(snapshot dir, commit) when the model's revision is in the cache with one of
    ``markers``; None otherwise.  Offline and cheap: no listing, no hashing."""
    from embctl.models.heads import commit_for
    from embctl.models.hub import repo_dir

    storage = repo_dir(cache_dir, model.repo_id)
    commit = commit_for(model, cache_dir)
    if not commit:
        return None
    snapshot = storage / "snapshots" / commit
    if any((snapshot / marker).exists() for marker in markers):
        return snapshot, commit
    return None


def snapshot_dir(repo_id: str, commit: str,
                 cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The snapshot folder of ``repo_id`` at ``commit`` in the cache, when it exists."""
    from embctl.paths import hub_cache_dir, repo_folder_name

    path = hub_cache_dir(cache_dir) / repo_folder_name(repo_id) / "snapshots" / commit
    return path if path.is_dir() else None


def locate(model: Model, cache_dir: str | os.PathLike[str] | None = None, *,
           quiet: bool = False, markers: Sequence[str] = DEFAULT_MARKERS,
           options: dict[str, Any] | None = None) -> tuple[Path, str]:
    """The model's directory and the revision its vectors come from (the commit, or
    ``local-<fingerprint>`` for a local directory); pulls the model when it is not cached.

    ``markers``: files of which one must be present for a directory to be the model (a local
    directory without any is refused; a cached snapshot without any is pulled again).
    ``options``: the backend's pull options (``Backend.pull_options``) for that pull.
    """
    if model.local_path:
        path = Path(model.local_path)
        if not any((path / marker).exists() for marker in markers):
            raise EmbctlError(f"{model.ref}: no {' or '.join(markers)}; not a model directory")
        return path, "local-" + dir_fingerprint(path)
    from embctl.paths import hub_cache_dir

    cache = hub_cache_dir(cache_dir)
    found = cached_snapshot(model, cache, markers)
    if found:
        return found
    from embctl.models.pull import pull
    from embctl.registry import get_backend

    result = pull(model, get_backend(model.backend), cache, quiet=quiet, options=options)
    return Path(result.path), result.commit


def dir_fingerprint(path: Path) -> str:
    """Identify a local model directory's content by its files' paths, sizes and mtimes."""
    h = hashlib.sha256()
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = Path(folder) / name
            st = full.stat()
            h.update(f"{full.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n"
                     .encode())
    return h.hexdigest()[:16]
