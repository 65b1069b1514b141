"""Removal as a plan: every store says what it would delete, then one ``execute()`` deletes it.

Like huggingface_hub's ``DeleteCacheStrategy``, the plan is computed first, with the bytes it
frees, and executed second, so ``rm --dry-run`` shows exactly what ``rm`` does.  The bytes come
from the files as they were stat'ed when planned: each inode counted once, and only when the
plan deletes every hard link to it (a blob another repo links to stays, and so do its bytes);
a symlink frees nothing, whatever it points to.

Safety, for every store alike: each path is checked to lie inside its store's folder before
anything is deleted (judged on its parent's real path), and symlinks are unlinked, never
followed (``shutil.rmtree`` does the same inside folders).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embctl.errors import EmbctlError

if TYPE_CHECKING:
    from embctl.inventory import Entry

#: What ``rm --json`` shows of each removal, by default.
SHOWN = ("kind", "ref", "repo_id", "revision", "path", "freed_bytes")


@dataclass(frozen=True)
class Doomed:
    """A file a removal deletes, as it was when the removal was planned."""

    path: str
    size: int
    inode: tuple[int, int] | None  # (device, inode); None for a symlink: deleting it frees 0
    nlink: int = 1

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> Doomed | None:
        """The file at ``path`` (not following a symlink), or None when there is none."""
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return cls(os.fspath(path), 0, None)
        return cls(os.fspath(path), st.st_size, (st.st_dev, st.st_ino), st.st_nlink)


def bytes_freed(files: Iterable[Doomed]) -> int:
    """What deleting ``files`` frees: each inode once, when every link to it is among them."""
    paths: dict[tuple[int, int], set[str]] = {}
    known: dict[tuple[int, int], Doomed] = {}
    for f in files:
        if f.inode is not None:
            paths.setdefault(f.inode, set()).add(f.path)
            known[f.inode] = f
    return sum(known[i].size for i, found in paths.items() if len(found) >= known[i].nlink)


@dataclass(frozen=True)
class Removal:
    """One thing a plan removes: how ``rm`` shows it, and the paths that go."""

    kind: str  # "model", "vectors", "matrix", or what --prune finds: "incomplete", "blob"...
    root: str  # the store's folder: every path below must lie inside it
    ref: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    dirs: tuple[str, ...] = ()  # removed with everything in them
    files: tuple[str, ...] = ()  # unlinked; a missing one is no error
    frees: tuple[Doomed, ...] = ()  # the files whose bytes removing this frees
    shown: tuple[str, ...] = SHOWN  # the keys of its ``rm --json`` row
    show_path: bool = False  # the human line ends with the path
    notes: str = ""  # what tells it apart from others of its name (the entry's, as ls shows)
    #: Run after the plan's deletions (e.g. forget a pull record, drop an emptied repo folder).
    finish: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    @property
    def freed_bytes(self) -> int:
        return bytes_freed(self.frees)

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.shown}

    def describe(self) -> str:
        """``model all-MiniLM-L6-v2 (91.6 MB)``, ``vectors all-MiniLM-L6-v2 [ns=469fded1,
        prefix='query: '] (49.2 kB)``: what ``rm`` prints after its verb."""
        from embctl.console import human_size

        what = self.ref or self.repo_id or ""
        if self.revision:
            what += f"@{self.revision[:8]}"
        if self.notes:
            what += f" [{self.notes}]"
        text = f"{self.kind} {what} ({human_size(self.freed_bytes)})"
        return text + (f": {self.path}" if self.show_path else "")


def inside(root: str | os.PathLike[str], path: str) -> bool:
    """path is strictly inside root, judged on its parent's real path (path itself may be a
    symlink, which is unlinked and never followed)."""
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    return parent == real_root or parent.startswith(real_root + os.sep)


@dataclass(frozen=True)
class RemovalPlan:
    """What ``rm`` deletes across the stores, with the bytes it frees, before it deletes."""

    items: tuple[Removal, ...] = ()

    def __add__(self, other: RemovalPlan) -> RemovalPlan:
        """Both plans; a removal already planned (a repo shown as two backends' rows) once."""
        planned = {_what(i) for i in self.items}
        return RemovalPlan(self.items + tuple(i for i in other.items
                                              if _what(i) not in planned))

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def bytes_freed(self) -> int:
        """Known before anything is deleted: a file in several removals counts once."""
        return bytes_freed(f for item in self.items for f in item.frees)

    def to_json(self, dry_run: bool) -> dict[str, Any]:
        """``rm --json``: the removals, the bytes freed and whether this was a dry run."""
        return {"removed": [item.to_json() for item in self.items],
                "freed_bytes": self.bytes_freed, "dry_run": dry_run}

    def check(self) -> None:
        """Refuse the whole plan, before deleting anything, if a path lies outside its store."""
        for item in self.items:
            for path in (*item.dirs, *item.files):
                if not inside(item.root, path):
                    raise EmbctlError(f"refusing to delete {path}: outside the cache {item.root}")

    def execute(self) -> int:
        """Delete everything planned, then run each removal's ``finish`` (once each); return
        the bytes freed (as planned)."""
        import shutil  # not at module level: it imports the compression modules
        self.check()
        for item in self.items:
            for path in item.files:
                try:
                    os.unlink(path)  # a symlink is unlinked, never followed
                except FileNotFoundError:
                    pass
        for item in self.items:
            for path in item.dirs:
                if os.path.islink(path):
                    os.unlink(path)
                elif os.path.isdir(path):
                    shutil.rmtree(path)  # unlinks symlinks inside, never follows them
        done: set[int] = set()  # removals may share one finish (a repo's pruned blobs)
        for item in self.items:
            if item.finish is not None and id(item.finish) not in done:
                done.add(id(item.finish))
                item.finish()
        return self.bytes_freed


def remove_files(kind: str, root: str | os.PathLike[str], entry: Entry,
                 files: Iterable[str | os.PathLike[str]]) -> Removal:
    """The removal of a store entry that is a set of files (a vector cache, a matrix)."""
    paths = tuple(os.fspath(p) for p in files)
    frees = tuple(d for d in map(Doomed.of, paths) if d is not None)
    return Removal(kind, os.fspath(root), entry.ref, entry.repo_id, None, entry.path,
                   files=paths, frees=frees, notes=entry.notes)


def _what(item: Removal) -> tuple:
    """What a removal deletes, whatever name it is shown by."""
    return (item.kind, item.root, item.path, item.revision, item.dirs, item.files)
