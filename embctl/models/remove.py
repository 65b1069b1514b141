"""Removing models from the cache, and pruning what nothing needs.

Like huggingface_hub's ``DeleteCacheStrategy``, a plan is computed first (what goes, how many
bytes it frees) and executed second, so ``--dry-run`` shows exactly what would happen.  Every
path is checked to lie inside the cache before it is touched, and symlinks are unlinked,
never followed.  The cache stays valid for ``huggingface_hub.scan_cache_dir()``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from embctl.errors import EmbctlError
from embctl.models import records
from embctl.models.scan import CachedRepo, scan_cache, scan_repo

# Pruning leaves alone anything touched this recently: it may belong to a pull in progress.
PRUNE_GRACE_SECONDS = 600


@dataclass
class RemovalPlan:
    """Paths to delete and what deleting them frees."""

    cache_dir: Path
    dirs: list[str] = field(default_factory=list)  # removed recursively
    files: list[str] = field(default_factory=list)  # blobs, links, ref files
    freed_bytes: int = 0
    items: list[dict] = field(default_factory=list)  # human/JSON description
    forget: list[tuple[str, str | None]] = field(default_factory=list)  # pull records

    def merge(self, other: RemovalPlan) -> None:
        self.dirs += other.dirs
        self.files += other.files
        self.freed_bytes += other.freed_bytes
        self.items += other.items
        self.forget += other.forget


def _inside(cache_dir: Path, path: str) -> bool:
    """path is strictly inside cache_dir, judged on its parent's real path (path itself may
    be a symlink, which we unlink and never follow)."""
    root = os.path.realpath(cache_dir)
    parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    return parent == root or parent.startswith(root + os.sep)


def plan_repo(cache_dir: Path, repo: CachedRepo, ref: str) -> RemovalPlan:
    plan = RemovalPlan(cache_dir)
    plan.dirs.append(repo.path)
    locks = os.path.join(cache_dir, ".locks", os.path.basename(repo.path))
    if os.path.isdir(locks):
        plan.dirs.append(locks)
    plan.freed_bytes = repo.size + repo.incomplete_size
    plan.items.append({"kind": "model", "ref": ref, "repo_id": repo.repo_id, "revision": None,
                       "path": repo.path, "freed_bytes": plan.freed_bytes})
    plan.forget.append((repo.repo_id, None))
    return plan


def plan_revision(cache_dir: Path, repo: CachedRepo, revision: str, ref: str) -> RemovalPlan:
    commit = repo.refs.get(revision, revision)
    rev = repo.revision(commit) or next(
        (r for r in repo.revisions if r.commit.startswith(revision) and len(revision) >= 7), None)
    if rev is None:
        raise EmbctlError(f"{ref}: revision {revision!r} is not in the cache")
    if len(repo.revisions) == 1:
        return plan_repo(cache_dir, repo, ref)
    keep = {f.blob for r in repo.revisions if r is not rev for f in r.files if f.blob}
    drop = {f.blob for f in rev.files if f.blob and f.blob not in keep and f.blob in repo.blobs}
    plan = RemovalPlan(cache_dir)
    plan.dirs.append(os.path.join(repo.path, "snapshots", rev.commit))
    no_exist = os.path.join(repo.path, ".no_exist", rev.commit)
    if os.path.isdir(no_exist):
        plan.dirs.append(no_exist)
    plan.files += [repo.blobs[b].path for b in sorted(drop)]
    plan.files += [os.path.join(repo.path, "refs", name) for name in rev.refs]
    plan.freed_bytes = sum(repo.blobs[b].size for b in drop)
    plan.items.append({"kind": "model", "ref": ref, "repo_id": repo.repo_id,
                       "revision": rev.commit, "path": plan.dirs[0],
                       "freed_bytes": plan.freed_bytes})
    plan.forget.append((repo.repo_id, rev.commit))
    return plan


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
    plan = RemovalPlan(cache_dir)
    for repo in scan_cache(cache_dir) if repos is None else repos:
        if repo.repo_type != "model":  # datasets and spaces belong to other tools
            continue
        for blob in repo.incomplete:
            name = blob.name.removesuffix(".incomplete")
            if now - blob.mtime < PRUNE_GRACE_SECONDS or _locked(cache_dir, repo, name):
                continue
            plan.files.append(blob.path)
            plan.freed_bytes += blob.size
            plan.items.append({"kind": "incomplete", "repo_id": repo.repo_id, "path": blob.path,
                               "freed_bytes": blob.size})
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
            plan.dirs.append(os.path.join(repo.path, "snapshots", rev.commit))
            plan.items.append({"kind": "revision", "repo_id": repo.repo_id,
                               "revision": rev.commit, "freed_bytes": 0})
        used = {f.blob for r in kept for f in r.files if f.blob}
        for name, blob in repo.blobs.items():
            if name in used or now - blob.mtime < PRUNE_GRACE_SECONDS:
                continue
            plan.files.append(blob.path)
            plan.freed_bytes += blob.size
            plan.items.append({"kind": "blob", "repo_id": repo.repo_id, "path": blob.path,
                               "freed_bytes": blob.size})
    return plan


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def execute(plan: RemovalPlan) -> None:
    for path in [*plan.dirs, *plan.files]:
        if not _inside(plan.cache_dir, path):
            raise EmbctlError(f"refusing to delete {path}: outside the cache {plan.cache_dir}")
    for path in plan.files:
        try:
            os.unlink(path)  # a symlink is unlinked, never followed
        except FileNotFoundError:
            pass
    for path in plan.dirs:
        if os.path.islink(path):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)  # rmtree unlinks symlinks inside, never follows them
    for repo_id, commit in plan.forget:
        records.forget(repo_id, plan.cache_dir, commit)
    _tidy(plan)


def _tidy(plan: RemovalPlan) -> None:
    """Drop repos left with nothing in them, so the cache has no empty shells."""
    repo_dirs = set()
    for p in [*plan.dirs, *plan.files]:
        parts = Path(p).relative_to(plan.cache_dir).parts if Path(p).is_relative_to(
            plan.cache_dir) else ()
        if len(parts) > 1:
            repo_dirs.add(os.path.join(plan.cache_dir, parts[0]))
    for repo_dir in repo_dirs:
        repo = scan_repo(repo_dir) if os.path.isdir(repo_dir) else None
        if repo is None:
            continue
        if not repo.revisions and not repo.blobs and not repo.incomplete:
            shutil.rmtree(repo_dir, ignore_errors=True)
            continue
        # refs that now point at a removed snapshot would make scan_cache_dir complain
        commits = {r.commit for r in repo.revisions}
        for name, commit in repo.refs.items():
            if commit not in commits:
                Path(repo_dir, "refs", name).unlink(missing_ok=True)
