"""Which commit a backend's model is, when several backends share one cached repo.

A branch (``refs/main``) is shared by every backend that pulled the repo: st's safetensors,
onnx's graphs and the matrix backend's tensors may all live in its snapshot.  A pull for one
backend moves the branch only when the new commit keeps every file the current one holds
(`plan_branch`: those files come along with the pull), so a model that worked keeps working.
When it cannot (the Hub's new commit lacks a file, or an import holds other files), the
branch stays and the pulling backend is *pinned* to its commit in the pull record
(:func:`embctl.models.records.set_pin`); `commit_for` answers with the pin for that backend
and with the branch for every other.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from embctl.backends import Model
from embctl.models import records
from embctl.models.hub import is_commit, read_ref, repo_dir, write_ref


def branch_of(model: Model) -> str | None:
    """The branch a reference follows (``main`` by default); None for a pinned commit."""
    return None if is_commit(model.revision) else (model.revision or "main")


def commit_for(model: Model, cache_dir: Path, record: dict | None = None) -> str | None:
    """The cached commit ``model`` resolves to for its backend: the commit it names, its
    backend's pin of the branch, or the branch's ref.  Offline and cheap."""
    branch = branch_of(model)
    if branch is None:
        return model.revision
    storage = repo_dir(cache_dir, model.repo_id)
    if record is None:
        record = records.read_record(model.repo_id, cache_dir)
    pin = records.pinned(record, model.backend, branch)
    if pin and (storage / "snapshots" / pin).is_dir():
        return pin
    return read_ref(storage, branch)


def snapshot_paths(snapshot: Path) -> list[str]:
    """The repo-relative paths a snapshot holds (links whose blob exists)."""
    found = []
    for folder, _dirs, names in os.walk(snapshot):
        for name in names:
            full = os.path.join(folder, name)
            if os.path.exists(full):
                found.append(os.path.relpath(full, snapshot).replace(os.sep, "/"))
    return sorted(found)


@dataclass(frozen=True)
class BranchPlan:
    """What a pull of ``commit`` does to ``branch``."""

    branch: str | None  # None: the reference named a commit; no branch changes
    current: str | None  # the branch's commit before the pull
    carry: tuple[str, ...] = ()  # files of ``current`` the new commit must hold too
    lacking: tuple[str, ...] = ()  # files of ``current`` the new commit does not have

    @property
    def moves(self) -> bool:
        return self.branch is not None and not self.lacking

    def note(self, model: Model, commit: str) -> str | None:
        """The one line a pull that leaves the branch says, else None."""
        if self.moves or self.branch is None or self.current is None:
            return None
        return (f"{model.ref}: {self.branch} stays at {self.current[:8]}: the new commit "
                f"{commit[:8]} lacks {self.lacking[0]}, which the cached model uses; "
                f"{model.backend} uses {commit[:8]} (REF@{commit} names it anywhere)")


def plan_branch(model: Model, cache_dir: Path, commit: str, available: Collection[str],
                wanted: Collection[str]) -> BranchPlan:
    """How the pull of ``wanted`` at ``commit`` (whose files are ``available``) may move the
    branch: the files the branch's current snapshot holds come along when ``available`` has
    them all; otherwise the branch stays."""
    branch = branch_of(model)
    if branch is None:
        return BranchPlan(None, None)
    storage = repo_dir(cache_dir, model.repo_id)
    current = read_ref(storage, branch)
    if current is None or current == commit:
        return BranchPlan(branch, current)
    held = [p for p in snapshot_paths(storage / "snapshots" / current) if p not in wanted]
    lacking = tuple(p for p in held if p not in available)
    return BranchPlan(branch, current, tuple(p for p in held if p in available), lacking)


def settle(model: Model, cache_dir: Path, plan: BranchPlan, commit: str) -> str | None:
    """After every file is in place: move the branch (and drop the backend's pin), or pin
    the backend to ``commit``.  Returns the line to say when the branch stayed."""
    if plan.branch is None:
        return None
    if plan.moves:
        write_ref(repo_dir(cache_dir, model.repo_id), plan.branch, commit)
        records.set_pin(model.repo_id, cache_dir, model.backend, plan.branch, None)
        return None
    records.set_pin(model.repo_id, cache_dir, model.backend, plan.branch, commit)
    return plan.note(model, commit)
