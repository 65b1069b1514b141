"""The one interface of embctl's stores: the core's (models, vector caches) and plugins'.

Modelled on huggingface_hub's cache manager: a store is scanned from one entry point into
immutable rows (:class:`~embctl.inventory.Entry`), and removal is a plan that knows the bytes
it frees before it deletes anything.  ``ls``, ``du``, ``rm`` and ``verify`` are loops over the
stores (``embctl.stores.store_classes()``); the CLI only parses and renders.  A plugin adds
a store through the ``register_stores`` hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from embctl.backends import Model
    from embctl.inventory import Entry
    from embctl.stores.plan import RemovalPlan

#: What ``rm REF`` removes: the default (what REF names), its vector caches, or everything.
Scope = Literal["default", "vectors", "all"]


class Finding(Protocol):
    """One thing ``verify`` found wrong (or checked and found repaired)."""

    @property
    def resolved(self) -> bool:
        """Nothing is left wrong: repair mended it (or it was never wrong)."""
        ...

    def lines(self) -> list[str]:
        """One line each, for people."""
        ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class VerifyOptions:
    repair: bool = False  # mend what is wrong, then check again
    remote: bool = False  # also compare with the Hub (models)
    workers: int | None = None  # files hashed at once
    quiet: bool = False  # no progress on stderr
    #: Called before repairing a store's entry: (what is repaired, its findings).
    on_repair: Callable[[Any, list[Any]], None] | None = None


@dataclass(frozen=True)
class VerifyReport:
    """What a store's ``verify`` found."""

    checked: dict[str, int]  # counts for ``verify --json``'s "checked"
    summary: str  # the same, for people: "2 models (24 files)"
    problems: tuple[Finding, ...] = ()
    #: (repo id, commit, ref) of revisions whose bytes were wrong before a repair: whatever
    #: other stores derived from them (vectors) is no longer to be trusted.
    damaged: tuple[tuple[str, str, str], ...] = field(default=())
    #: (repo id, commit, ref, paths) of revisions whose files with wrong bytes a repair
    #: replaced by the right ones: what other stores made from those files is made again
    #: (``Store.rebuild``), whether or not ``damaged`` names the revision.
    repaired: tuple[tuple[str, str, str, tuple[str, ...]], ...] = field(default=())
    #: The backend whose vectors ``damaged`` can reach (a store of what one backend derives,
    #: an ONNX export: only that backend's vectors came from it); None: every backend's.
    reaches: str | None = None

    @property
    def ok(self) -> bool:
        return all(p.resolved for p in self.problems)


class Store(Protocol):
    """A store of things embctl manages.

    A store class is registered, not an instance: the core calls ``open`` for each command.
    Importing the module that defines it must stay cheap (``ls`` and ``du`` import it):
    standard library only, the rest imported inside the methods.
    """

    #: The ``Entry.kind`` of its rows: unique, and what ``ls --filter kind=...`` takes.
    kind: str
    #: ``du``'s lines, as ``(key, label)``: the key is ``du --json``'s, and ``usage`` returns
    #: bytes by these keys.  The first is the store's main line: ``du`` shows every store's
    #: main line, then the others, then the total.
    du_lines: tuple[tuple[str, str], ...]
    #: Keys among ``du_lines`` that ``du`` leaves out (not ``du --json``) when they are 0.
    du_optional: frozenset[str] = frozenset()

    @classmethod
    def open(cls, cache_dir: Path) -> Store:
        """The store, for a model cache at ``cache_dir`` (which only the model store uses)."""
        ...

    @property
    def root(self) -> Path:
        """The folder everything it holds lies in (nothing outside it is ever deleted)."""
        ...

    def scan(self) -> list[Entry]:
        """Every entry, for ``ls``: cheap, standard library only."""
        ...

    def select(self, model: Model | None = None, key: str | None = None) -> list[Entry]:
        """The entries a reference names (``model``), or the one whose key (a vector cache's
        namespace id, a matrix's cache key) starts with ``key``; every entry when both are
        None."""
        ...

    def named_by(self, model: Model, scope: Scope) -> bool:
        """Whether ``rm REF`` (with ``scope``) removes this store's entries of ``model``."""
        ...

    def verify(self, entries: list[Entry], options: VerifyOptions) -> VerifyReport: ...

    def forget_revision(self, repo_id: str, commit: str) -> list[Entry]:
        """Delete what was derived from a revision found damaged; return what went.  A store
        whose entries belong to backends may take ``backend=`` too: then damage that
        reaches one backend (``VerifyReport.reaches``) drops only that backend's entries,
        and a store without the parameter keeps everything."""
        ...

    # Optional (``verify`` calls it when a store has it):
    #
    # def rebuild(self, repo_id: str, commit: str, paths: tuple[str, ...],
    #             options: VerifyOptions) -> list[Finding]:
    #     """Make again what was made from ``paths`` (repo files of ``commit`` a repair just
    #     replaced by the right bytes), or mark it stale; one finding for each thing made
    #     from them (not ``resolved`` when it is left stale), whose ``path`` (its entry's)
    #     verify then does not check a second time."""

    def plan_removal(self, entries: list[Entry], model: Model | None = None) -> RemovalPlan:
        """The plan that removes ``entries`` (selected for ``model``, which may pin one
        revision to remove alone)."""
        ...

    def plan_prune(self, entries: list[Entry] | None = None) -> RemovalPlan:
        """What nothing needs (``rm --prune``), among ``entries`` or in the whole store."""
        ...

    def usage(self) -> dict[str, int]:
        """Bytes by ``du`` category: the keys of ``du_lines``."""
        ...
