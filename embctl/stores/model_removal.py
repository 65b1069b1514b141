"""Planning removals in the model cache: a repo, one revision, or what ``--prune`` finds.

Each plan is a :class:`~embctl.stores.plan.RemovalPlan`; the cache stays valid for
``huggingface_hub.scan_cache_dir()`` once it is executed (emptied repos are dropped, refs to
removed snapshots too).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from embctl.errors import EmbctlError
from embctl.models import records
from embctl.models.scan import Blob, CachedRepo, scan_cache, scan_repo
from embctl.stores.plan import Doomed, Removal, RemovalPlan

# Pruning leaves alone anything touched this recently: it may belong to a pull in progress.
PRUNE_GRACE_SECONDS = 600


def _doomed(blob: Blob) -> Doomed:
    """A blob as a file to delete: its bytes go only if it is no symlink."""
    return Doomed(blob.path, blob.size, None if blob.link else blob.inode, blob.nlink)


def _finisher(cache_dir: Path, repo: CachedRepo, commit: str | None, *, forget: bool):
    def finish() -> None:
        if forget:
            records.forget(repo.repo_id, cache_dir, commit)
        _tidy(repo.path)

    return finish


def plan_repo(cache_dir: Path, repo: CachedRepo, ref: str) -> RemovalPlan:
    dirs = [repo.path]
    locks = os.path.join(cache_dir, ".locks", os.path.basename(repo.path))
    if os.path.isdir(locks):
        dirs.append(locks)
    frees = tuple(_doomed(b) for b in [*repo.blobs.values(), *repo.incomplete])
    return RemovalPlan((Removal("model", os.fspath(cache_dir), ref, repo.repo_id, None, repo.path,
                                dirs=tuple(dirs), frees=frees,
                                finish=_finisher(cache_dir, repo, None, forget=True)),))


def plan_revision(cache_dir: Path, repo: CachedRepo, revision: str, ref: str) -> RemovalPlan:
    commit = repo.refs.get(revision, revision)
    rev = repo.revision(commit) or next(
        (r for r in repo.revisions if r.commit.startswith(revision) and len(revision) >= 7), None)
    if rev is None:
        raise EmbctlError(f"{ref}: revision {revision!r} is not in the cache")
    if len(repo.revisions) == 1:
        return plan_repo(cache_dir, repo, ref)
    keep = {f.blob for r in repo.revisions if r is not rev for f in r.files if f.blob}
    drop = sorted({f.blob for f in rev.files if f.blob and f.blob not in keep
                   and f.blob in repo.blobs})
    snapshot = os.path.join(repo.path, "snapshots", rev.commit)
    dirs = [snapshot]
    no_exist = os.path.join(repo.path, ".no_exist", rev.commit)
    if os.path.isdir(no_exist):
        dirs.append(no_exist)
    files = [repo.blobs[b].path for b in drop]
    files += [os.path.join(repo.path, "refs", name) for name in rev.refs]
    return RemovalPlan((Removal("model", os.fspath(cache_dir), ref, repo.repo_id, rev.commit,
                                snapshot, dirs=tuple(dirs), files=tuple(files),
                                frees=tuple(_doomed(repo.blobs[b]) for b in drop),
                                finish=_finisher(cache_dir, repo, rev.commit, forget=True)),))


def _locked(cache_dir: Path, repo: CachedRepo, blob_name: str) -> bool:
    """A download holds this blob's lock right now (huggingface_hub's per-blob file lock)."""
    from filelock import FileLock, Timeout

    lock = os.path.join(cache_dir, ".locks", os.path.basename(repo.path), f"{blob_name}.lock")
    if not os.path.exists(lock):
        return False
    try:
        with FileLock(lock, timeout=0):
            return False
    except Timeout:
        return True
    except OSError:
        return False


def plan_prune(cache_dir: Path, repos: list[CachedRepo] | None = None,
               now: float | None = None) -> RemovalPlan:
    """Incomplete downloads, revisions no ref points to, blobs no snapshot references, in
    model repos only."""
    now = now or time.time()
    root = os.fspath(cache_dir)
    items: list[Removal] = []
    for repo in scan_cache(cache_dir) if repos is None else repos:
        if repo.repo_type != "model":  # datasets and spaces belong to other tools
            continue
        tidy = _finisher(cache_dir, repo, None, forget=False)
        for blob in repo.incomplete:
            name = blob.name.removesuffix(".incomplete")
            if now - blob.mtime < PRUNE_GRACE_SECONDS or _locked(cache_dir, repo, name):
                continue
            items.append(Removal("incomplete", root, None, repo.repo_id, None, blob.path,
                                 files=(blob.path,), frees=(_doomed(blob),),
                                 shown=("kind", "repo_id", "path", "freed_bytes"),
                                 show_path=True, finish=tidy))
        # A revision no ref points to is kept when a pull asked for it by commit hash
        # (huggingface_hub writes no ref for those): the pull record says so.
        pulled = records.read_record(repo.repo_id, cache_dir).get("revisions", {})
        detached = [
            r for r in repo.revisions
            if not r.refs and not pulled.get(r.commit, {}).get("complete")
            and now - _mtime(os.path.join(repo.path, "snapshots", r.commit)) >= PRUNE_GRACE_SECONDS
        ]
        kept = [r for r in repo.revisions if r not in detached]
        for rev in detached:
            items.append(Removal("revision", root, None, repo.repo_id, rev.commit,
                                 dirs=(os.path.join(repo.path, "snapshots", rev.commit),),
                                 shown=("kind", "repo_id", "revision", "freed_bytes"),
                                 finish=tidy))
        used = {f.blob for r in kept for f in r.files if f.blob}
        for name, blob in repo.blobs.items():
            if name in used or now - blob.mtime < PRUNE_GRACE_SECONDS:
                continue
            items.append(Removal("blob", root, None, repo.repo_id, None, blob.path,
                                 files=(blob.path,), frees=(_doomed(blob),),
                                 shown=("kind", "repo_id", "path", "freed_bytes"),
                                 show_path=True, finish=tidy))
    return RemovalPlan(tuple(items))


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _tidy(repo_dir: str) -> None:
    """Drop a repo left with nothing in it, so the cache has no empty shells, and refs that
    now point at a removed snapshot (scan_cache_dir would complain)."""
    repo = scan_repo(repo_dir) if os.path.isdir(repo_dir) else None
    if repo is None:
        return
    if not repo.revisions and not repo.blobs and not repo.incomplete:
        shutil.rmtree(repo_dir, ignore_errors=True)
        return
    commits = {r.commit for r in repo.revisions}
    for name, commit in repo.refs.items():
        if commit not in commits:
            Path(repo_dir, "refs", name).unlink(missing_ok=True)
