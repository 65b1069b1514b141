"""``FolderStore``: the base class of a store that is a folder of items, each with a manifest.

The vector caches (a SQLite file each), the matrices (a safetensors file each) and the ONNX
exports (a folder each) are such stores, and so is most of what a plugin keeps under
EMBCTL_HOME.  What they share lives here once: the folder (``root``), nothing scanned when it
is empty, ``select`` as a filter of ``scan``, ``verify`` as a walk of its items with a count
for people, removal plans that delete an item's files or folder with the bytes they free,
``du`` as the sum of the rows.  A subclass says where its folder is (``default_folder``) and
how to read one item (``read_item``), and overrides what differs.

Standard library only, like every store module: ``ls`` and ``du`` import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

if TYPE_CHECKING:
    from embctl.backends import Model
    from embctl.inventory import Entry
    from embctl.stores.base import Scope, VerifyOptions, VerifyReport
    from embctl.stores.plan import Removal, RemovalPlan


def has_files(path: Path) -> bool:
    """Whether a folder holds anything (a missing or unreadable one holds nothing)."""
    try:
        return any(path.iterdir())
    except OSError:
        return False


def names(entry: Entry, model: Model | None, key: str | None, key_field: str = "key") -> bool:
    """Whether ``rm``/``verify`` name ``entry``: ``key`` starts its ``extra[key_field]``, and
    ``model`` is its repo and backend, at the commit it pins (a branch or tag: every
    revision); None names every entry."""
    if key is not None and not str(entry.extra.get(key_field, "")).startswith(key):
        return False
    if model is None:
        return True
    if entry.repo_id != model.repo_id or entry.backend not in (None, model.backend):
        return False
    from embctl.models.hub import is_commit

    return not (is_commit(model.revision) and entry.revision != model.revision)


class Checked(Protocol):
    """What ``FolderStore.check`` returns: a ``verify`` finding that says whether it is ok."""

    @property
    def ok(self) -> bool: ...

    @property
    def resolved(self) -> bool: ...

    def lines(self) -> list[str]: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class ItemCheck:
    """The default check's verdict on one item: what reading its manifest found wrong."""

    entry: Entry
    problems: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def resolved(self) -> bool:
        return self.ok or self.repaired

    def lines(self) -> list[str]:
        return [f"{self.entry.ref} ({self.entry.kind} {self.entry.path}): {p}"
                for p in self.problems]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.entry.kind, "ref": self.entry.ref, "path": self.entry.path,
                "ok": self.ok, "problems": self.problems, "repaired": self.repaired}


class FolderStore:
    """A :class:`~embctl.stores.base.Store` over one folder of items (files or folders).

    Declare ``kind``, ``du_lines`` and ``noun``, then ``default_folder()`` and
    ``read_item(path)``; every other member has a default a subclass may override:
    ``read()`` (all rows at once, when an item is not one child of the folder),
    ``matches()``, ``named_by()``, ``check()``, ``files()``/``removal()``, ``prunable()``.
    """

    kind: ClassVar[str]
    du_lines: ClassVar[tuple[tuple[str, str], ...]]
    du_optional: ClassVar[frozenset[str]] = frozenset()
    #: What ``verify`` counts, for people: ``plural(n, noun, nouns)``; ``verify --json``'s
    #: "checked" key is the plural in snake case ("vector caches" -> "vector_caches").
    noun: ClassVar[str]
    nouns: ClassVar[str | None] = None
    #: The ``Entry.extra`` field a KEY (``rm --namespace``, ``verify``) is a prefix of.
    key_field: ClassVar[str] = "key"

    def __init__(self, folder: Path | None = None, *, cache_dir: Path | None = None) -> None:
        self.folder = folder  # None: default_folder()
        self.cache_dir = cache_dir  # the model cache, for a store whose items come from it

    @classmethod
    def open(cls, cache_dir: Path) -> Self:
        return cls(cache_dir=cache_dir)

    def default_folder(self) -> Path:
        """Where the items are, by default (under ``embctl_home()``)."""
        raise NotImplementedError

    @property
    def root(self) -> Path:
        return self.folder or self.default_folder()

    # -- listing ----------------------------------------------------------------------------

    def scan(self) -> list[Entry]:
        """Every row; nothing is read (nor imported) when the folder is empty or missing."""
        return self.read() if has_files(self.root) else []

    def read(self) -> list[Entry]:
        """Every row of a folder that holds something: ``read_item`` of each item."""
        return [e for e in map(self.read_item, self.items()) if e is not None]

    def items(self) -> list[Path]:
        """The items: the folder's children, sorted, but hidden ones (``.locks``, temporaries)."""
        return sorted(p for p in self.root.iterdir() if not p.name.startswith("."))

    def read_item(self, path: Path) -> Entry | None:
        """One item's row: its manifest read, its size (``files_size``) and last use
        (``last_used``); status "broken" with an ``error`` when the manifest does not read;
        None for what is not an item."""
        raise NotImplementedError

    def select(self, model: Model | None = None, key: str | None = None) -> list[Entry]:
        return [e for e in self.scan() if self.matches(e, model, key)]

    def matches(self, entry: Entry, model: Model | None, key: str | None) -> bool:
        return names(entry, model, key, self.key_field)

    def named_by(self, model: Model, scope: Scope) -> bool:
        """What a model's reference names goes with the model (``rm REF``, ``--all``)."""
        return scope != "vectors"

    def usage(self) -> dict[str, int]:
        return {self.du_lines[0][0]: sum(e.size_bytes for e in self.scan())}

    # -- verify -----------------------------------------------------------------------------

    def check(self, entry: Entry, options: VerifyOptions) -> Checked:
        """One item's verdict (repaired with ``options.repair``): by default, a manifest that
        did not read is a problem."""
        problems = [f"cannot be read: {entry.extra.get('error')}"] \
            if entry.status == "broken" else []
        return ItemCheck(entry, problems)

    def verify(self, entries: list[Entry], options: VerifyOptions) -> VerifyReport:
        from embctl.console import plural
        from embctl.stores.base import VerifyReport

        checks = [self.check(e, options) for e in entries]
        n, words = len(checks), self.nouns or f"{self.noun}s"
        return VerifyReport({words.lower().replace(" ", "_"): n}, plural(n, self.noun, words),
                            tuple(c for c in checks if not c.ok))

    def forget_revision(self, repo_id: str, commit: str) -> list[Entry]:
        """Nothing: a store of what it made itself keeps it when a model is repaired."""
        return []

    # -- removal ----------------------------------------------------------------------------

    def files(self, entry: Entry) -> list[Path]:
        """The files an item that is a file is removed with (its companions too)."""
        return [Path(entry.path)]

    def removal(self, entry: Entry) -> Removal:
        """An item's removal: its folder, or its ``files()``, with the bytes they free."""
        from embctl.stores.plan import Doomed, Removal, remove_files

        folder = Path(entry.path)
        if not folder.is_dir() or folder.is_symlink():
            return remove_files(self.kind, self.root, entry, self.files(entry))
        inside = sorted(Path(top, name) for top, _dirs, names in os.walk(folder)
                        for name in names)
        return Removal(self.kind, os.fspath(self.root), entry.ref, entry.repo_id, None,
                       entry.path, dirs=(entry.path,), notes=entry.notes,
                       frees=tuple(d for d in map(Doomed.of, inside) if d is not None))

    def plan_removal(self, entries: list[Entry], model: Model | None = None) -> RemovalPlan:
        from embctl.stores.plan import RemovalPlan

        return RemovalPlan(tuple(self.removal(e) for e in entries))

    def prunable(self, entry: Entry) -> bool:
        """What ``rm --prune`` removes (left over by an interruption, say); by default nothing,
        and the store is not even scanned for it."""
        return False

    def plan_prune(self, entries: list[Entry] | None = None) -> RemovalPlan:
        from embctl.stores.plan import RemovalPlan

        if type(self).prunable is FolderStore.prunable:
            return RemovalPlan()
        chosen = self.scan() if entries is None else entries
        return RemovalPlan(tuple(self.removal(e) for e in chosen if self.prunable(e)))
