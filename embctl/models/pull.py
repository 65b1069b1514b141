"""Pulling a model into the Hugging Face cache.

Only the files the backend needs are fetched, pinned to the commit the revision resolved to,
by :mod:`embctl.models.download`: per-blob file locks shared with huggingface_hub (concurrent
pulls move the bytes once), ``.incomplete`` files resumed with Range requests, content hashes
checked, atomic renames (no snapshot link ever points at a partial blob).  On top of that:

- ``refs/<branch>`` is written last, so a failed pull never moves a branch to a partial
  snapshot; links a failed pull created are rolled back (complete blobs stay, so the next pull
  resumes where this one stopped);
- a pull record says which files the revision should have (``embctl ls`` shows partial pulls).
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embctl.backends import Backend, Model
from embctl.console import warn
from embctl.errors import EmbctlError
from embctl.models import records
from embctl.models.heads import commit_for, plan_branch, settle
from embctl.models.hub import (
    HubUnreachable,
    Listing,
    RemoteFile,
    RepoNotFound,
    hub_error,
    is_offline,
    list_revision,
    repo_dir,
)
from embctl.progress import ByteProgress


@dataclass
class PullResult:
    ref: str
    repo_id: str
    backend: str
    commit: str
    files: list[str]
    total_bytes: int
    downloaded_bytes: int = 0
    downloaded_files: int = 0
    up_to_date: bool = False
    offline: bool = False
    seconds: float = 0.0
    path: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "ref": self.ref,
            "repo_id": self.repo_id,
            "backend": self.backend,
            "revision": self.commit,
            "files": self.files,
            "size_bytes": self.total_bytes,
            "downloaded_bytes": self.downloaded_bytes,
            "downloaded_files": self.downloaded_files,
            "up_to_date": self.up_to_date,
            "path": self.path,
            "seconds": round(self.seconds, 3),
            **self.extra,
        }


def pull_options(backend: Backend, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The backend's ``pull_options``, each given in ``options`` or its default."""
    given = options or {}
    return {o.name: o.default if given.get(o.name) is None else given[o.name]
            for o in backend.options if o.name in backend.pull_options}


def select(backend: Backend, paths: list[str], include: tuple[str, ...],
           exclude: tuple[str, ...], options: Mapping[str, Any] | None = None) -> list[str]:
    """The backend's files (for its pull options), plus what --include adds, minus what
    --exclude removes."""
    chosen = list(backend.select_files(paths, pull_options(backend, options)))
    chosen += [p for p in paths if p not in chosen and any(fnmatch.fnmatch(p, g) for g in include)]
    return [p for p in chosen if not any(fnmatch.fnmatch(p, g) for g in exclude)]


def _pointer(storage: Path, commit: str, path: str) -> Path:
    return storage / "snapshots" / commit / Path(*path.split("/"))


def _present(storage: Path, commit: str, path: str) -> bool:
    return os.path.exists(_pointer(storage, commit, path))  # follows the link to the blob


def _cached_offline(model: Model, backend: Backend, cache_dir: Path, storage: Path,
                    options: dict[str, Any], include: tuple[str, ...],
                    exclude: tuple[str, ...]) -> PullResult:
    """Offline: succeed when a complete pull of this revision (with these pull options) is
    cached, or when the cached revision holds every file the backend would pull (another
    backend's pull brought them): the cache's bytes are never asked for again."""
    record = records.read_record(model.repo_id, cache_dir)
    commit = commit_for(model, cache_dir, record)
    entry = record.get("revisions", {}).get(commit or "", {})
    files = list(entry.get("files", {}))
    pulled_as = entry.get("pull_options", {}).get(model.backend, []) if options else [options]
    snapshot = storage / "snapshots" / (commit or "-")
    if commit and entry.get("complete") and options in pulled_as \
            and all(_present(storage, commit, p) for p in files):
        size = sum(entry["files"].values())
        return PullResult(model.ref, model.repo_id, model.backend, commit, files, size,
                          up_to_date=True, offline=True, path=str(snapshot))
    paths = entry.get("listing")  # every file of the revision, as its pull (or import) saw it
    if commit and snapshot.is_dir() and paths:
        wanted = select(backend, sorted(paths), include, exclude, options)
        if wanted and all(_present(storage, commit, p) for p in wanted):
            sizes = {p: os.path.getsize(_pointer(storage, commit, p)) for p in wanted}
            records.update_record(model.repo_id, cache_dir, backend=model.backend,
                                  ref=model.ref, commit=commit,
                                  files={**entry.get("files", {}), **sizes}, complete=True,
                                  options=options if backend.pull_options else None,
                                  wanted=wanted)
            return PullResult(model.ref, model.repo_id, model.backend, commit, wanted,
                              sum(sizes.values()), up_to_date=True, offline=True,
                              path=str(snapshot))
    raise HubUnreachable.offline(model.ref)


def pull(
    model: Model,
    backend: Backend,
    cache_dir: Path,
    *,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    quiet: bool = False,
    workers: int = 8,
    options: Mapping[str, Any] | None = None,
) -> PullResult:
    """Pull ``model``: the files ``backend.select_files`` wants (for ``options``, the
    backend's ``pull_options``), then ``backend.after_pull``."""
    start = time.monotonic()
    storage = repo_dir(cache_dir, model.repo_id)
    chosen = pull_options(backend, options)
    if is_offline():
        result = _cached_offline(model, backend, cache_dir, storage, chosen, include, exclude)
        _after(model, backend, result, cache_dir, quiet, chosen)
        return result
    try:
        listing = list_revision(model.repo_id, model.revision, model.ref)
    except RepoNotFound as exc:  # a typo, most often: name the close match
        from embctl.models.lookup import did_you_mean

        raise RepoNotFound(f"{exc}{did_you_mean(model.ref, cache_dir)}") from None
    wanted = select(backend, sorted(listing.files), include, exclude, chosen)
    if not wanted:
        raise EmbctlError(f"{model.ref}: no files to pull (check --include/--exclude)")
    commit = listing.commit
    # The branch moves only if what its current snapshot holds (another backend's model)
    # comes along: those files are fetched too (or linked, when their blobs are cached).
    branch = plan_branch(model, cache_dir, commit, listing.files, wanted)
    files = {p: listing.files[p] for p in [*wanted, *(branch.carry if branch.moves else ())]}
    total = sum(files[p].size for p in wanted)
    # What the revision should have: this pull's files, and those earlier pulls left in place
    # (an st pull, then an onnx one: both sets).
    earlier = records.read_record(model.repo_id, cache_dir).get("revisions", {}).get(
        commit, {}).get("files", {})
    expected = {p: n for p, n in earlier.items() if p in listing.files
                and _present(storage, commit, p)} | {p: f.size for p, f in files.items()}
    records.update_record(model.repo_id, cache_dir, backend=model.backend, ref=model.ref,
                          commit=commit, files=expected, complete=False,
                          listing=sorted(listing.files))
    missing = [p for p in files if not _present(storage, commit, p)]
    result = PullResult(model.ref, model.repo_id, model.backend, commit, wanted, total,
                        path=str(storage / "snapshots" / commit))
    if missing:
        result.downloaded_bytes, result.downloaded_files = _download(
            model, listing, files, missing, cache_dir, storage, quiet=quiet, workers=workers)
    else:
        result.up_to_date = True
    if branch.moves and branch.carry:
        result.extra["kept_from"] = {"revision": branch.current, "files": list(branch.carry)}
    records.update_record(model.repo_id, cache_dir, backend=model.backend, ref=model.ref,
                          commit=commit, files=expected, complete=True,
                          options=chosen if backend.pull_options else None, wanted=wanted)
    note = settle(model, cache_dir, branch, commit)
    if note:
        warn(note)
    _after(model, backend, result, cache_dir, quiet, chosen)
    result.seconds = time.monotonic() - start
    return result


def _after(model: Model, backend: Backend, result: PullResult, cache_dir: Path, quiet: bool,
           options: dict[str, Any]) -> None:
    """The backend's ``after_pull`` (an export of what the snapshot lacks), and the options
    in the result."""
    if backend.pull_options:
        result.extra.setdefault("options", options)
    backend.after_pull(model, result, {**options, "cache_dir": cache_dir, "quiet": quiet})


def _download(model: Model, listing: Listing, files: dict[str, RemoteFile], missing: list[str],
              cache_dir: Path, storage: Path, *, quiet: bool, workers: int) -> tuple[int, int]:
    """Fetch the missing files.  Returns (bytes, files) this process actually transferred.

    A failure, Ctrl-C or SIGTERM stops the other downloads within a chunk (their
    ``.incomplete`` files stay for the next pull) and rolls back the links this pull created.
    """
    from embctl.models.download import fetch_file
    from embctl.models.workers import run_all

    commit = listing.commit
    created_before = {p for p in files if _pointer(storage, commit, p).is_symlink()}
    need = sum(files[p].size for p in missing)
    stop = threading.Event()
    received: dict[str, int] = {}

    def fetch(path: str) -> None:
        received[path] = fetch_file(model.repo_id, path, commit, cache_dir, storage,
                                    known=(files[path].etag, files[path].size), stop=stop)

    def bytes_on_disk() -> int:
        done = 0
        for p in missing:
            etag = files[p].etag
            if _present(storage, commit, p):
                done += files[p].size
            elif etag:
                try:
                    done += (storage / "blobs" / f"{etag}.incomplete").stat().st_size
                except OSError:
                    pass
        return done

    label = f"pulling {model.repo_id}"
    with ByteProgress(label, need, quiet=quiet) as progress:
        # Largest first: the long transfer starts at once, small files fill the gaps.
        order = sorted(missing, key=lambda p: -files[p].size)
        try:
            run_all(fetch, order, workers=workers, stop=stop,
                    tick=lambda: progress.update(bytes_on_disk()))
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the workers stopped; undo, then exit
            _rollback(model, cache_dir, storage, commit, created_before, files)
            raise
        except Exception as exc:
            _rollback(model, cache_dir, storage, commit, created_before, files)
            raise hub_error(model.ref, exc) from None
        progress.update(need)
    return sum(received.values()), sum(1 for n in received.values() if n)


def _rollback(model: Model, cache_dir: Path, storage: Path, commit: str, created_before: set[str],
              files: dict[str, RemoteFile]) -> None:
    """Undo the snapshot links this failed pull created; keep blobs for the next pull."""
    record = records.read_record(model.repo_id, cache_dir)
    if record.get("revisions", {}).get(commit, {}).get("complete"):
        return  # a concurrent pull finished this revision: its links are wanted
    snapshot = storage / "snapshots" / commit
    for path in files:
        link = _pointer(storage, commit, path)
        if path not in created_before and link.is_symlink():
            link.unlink(missing_ok=True)
    for folder in sorted((p for p in snapshot.rglob("*") if p.is_dir()), reverse=True):
        _rmdir_if_empty(folder)
    _rmdir_if_empty(snapshot)  # snapshots/ itself stays: scan_cache_dir requires it


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
