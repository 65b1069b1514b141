"""``embctl verify`` as a loop over the stores.

Stores are checked in order.  When one repairs a revision whose wrong bytes may have been
used (a model file whose damage embed's check could not see), what the others derived from
it (vector caches) is dropped before they are checked.  What was made from the files a repair
replaced (an ONNX export) is made again, or marked stale, by the stores that have
``rebuild`` (docs/cache.md, "What a repair keeps").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embctl.stores.base import Finding, Store, VerifyOptions, VerifyReport

if TYPE_CHECKING:
    from embctl.backends import Model
    from embctl.inventory import Entry


def select_for_verify(stores: Sequence[Store], cache_dir: Path,
                      models: Sequence[Model]) -> list[tuple[Store, list[Entry]]]:
    """What each store holds of ``models`` (everything, when there are none); a reference
    that names nothing in any store is an error."""
    from embctl.models.lookup import not_in_cache

    if not models:
        return [(store, store.select()) for store in stores]
    picked: list[tuple[Store, list[Entry]]] = []
    found: set[int] = set()
    for store in stores:
        entries: dict[str, Entry] = {}  # by path: two references may name the same entry
        for i, model in enumerate(models):
            for entry in store.select(model):
                found.add(i)
                entries.setdefault(entry.path, entry)
        picked.append((store, list(entries.values())))
    for i, model in enumerate(models):
        if i not in found:
            raise not_in_cache(model.ref, cache_dir)
    return picked


@dataclass(frozen=True)
class Dropped:
    """What other stores dropped after a repair of a revision whose bytes were wrong, and
    what they made again (or marked stale) of the files it replaced."""

    ref: str
    commit: str
    entries: tuple[Entry, ...]
    rebuilt: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class Verified:
    """Every store's report, each with what its repairs made the others drop."""

    reports: tuple[VerifyReport, ...]
    dropped: tuple[tuple[Dropped, ...], ...]  # one tuple per report

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports) and all(
            f.resolved for after in self.dropped for d in after for f in d.rebuilt)

    @property
    def checked(self) -> dict[str, int]:
        return {k: v for r in self.reports for k, v in r.checked.items()}


def verify_stores(selection: Sequence[tuple[Store, list[Entry]]],
                  options: VerifyOptions) -> Verified:
    """Verify each store's selected entries, in order (see the module's docstring)."""
    reports: list[VerifyReport] = []
    dropped: list[tuple[Dropped, ...]] = []
    gone: set[str] = set()
    for store, entries in selection:
        report = store.verify([e for e in entries if e.path not in gone], options)
        reports.append(report)
        mine = []
        for repo_id, commit, ref in report.damaged:
            lost = tuple(e for other, _ in selection if other is not store
                         for e in _forget(other, repo_id, commit, report.reaches))
            gone.update(e.path for e in lost)
            mine.append(Dropped(ref, commit, lost))
        for repo_id, commit, ref, paths in report.repaired:
            made = _rebuild([s for s, _ in selection if s is not store], repo_id, commit,
                            paths, options)
            gone.update(f.path for f in made if getattr(f, "path", None))  # checked already
            if made:
                mine.append(Dropped(ref, commit, (), made))
        dropped.append(tuple(mine))
    return Verified(tuple(reports), tuple(dropped))


def _rebuild(stores: Sequence[Store], repo_id: str, commit: str, paths: tuple[str, ...],
             options: VerifyOptions) -> tuple[Finding, ...]:
    """Each store's ``rebuild`` (an optional member) of what it made from ``paths``."""
    from embctl.stores.plugged import guarded

    made: list[Finding] = []
    for store in stores:
        rebuild = getattr(store, "rebuild", None)
        if callable(rebuild):
            made += guarded(store, "rebuild",
                            lambda r=rebuild: list(r(repo_id, commit, paths, options)), [])
    return tuple(made)


def _forget(store: Store, repo_id: str, commit: str, backend: str | None) -> list[Entry]:
    """``store.forget_revision``, limited to ``backend``'s entries when the damage reaches only
    that backend (a store that knows no backends keeps everything then)."""
    if backend is None:
        return store.forget_revision(repo_id, commit)
    import inspect

    if "backend" not in inspect.signature(store.forget_revision).parameters:
        return []
    return store.forget_revision(repo_id, commit, backend=backend)  # type: ignore[call-arg]
