"""``embctl rm`` as one plan over the stores: what each reference names, namespaces, --prune."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from embctl.errors import EmbctlError
from embctl.stores.base import Scope, Store
from embctl.stores.plan import RemovalPlan

if TYPE_CHECKING:
    from embctl.backends import Model
    from embctl.inventory import Entry


def plan_rm(stores: Sequence[Store], cache_dir: Path, models: Sequence[Model], *,
            scope: Scope = "default", namespaces: Sequence[str] = (),
            prune: bool = False) -> RemovalPlan:
    """Everything ``rm`` would remove, nothing removed yet.

    Each reference removes, in each store that it names with ``scope``
    (:meth:`Store.named_by`), what that store selects for it; a reference that selects
    nothing anywhere is an error.  ``namespaces`` name vector caches by id (or unique
    prefix).  ``prune`` adds what nothing needs, in the stores the references selected from
    (the whole store when they selected nothing there).
    """
    from embctl.models.lookup import not_in_cache

    plan = RemovalPlan()
    found: set[int] = set()  # indexes into models
    selected: dict[str, list[Entry]] = {}
    for store in stores:
        for i, model in enumerate(models):
            if not store.named_by(model, scope):
                continue
            entries = store.select(model)
            if entries:
                found.add(i)
                selected.setdefault(store.kind, []).extend(entries)
                plan += store.plan_removal(entries, model)
    for i, model in enumerate(models):
        if i not in found:
            raise (EmbctlError(f"{model.ref}: no vector caches") if scope == "vectors"
                   else not_in_cache(model.ref, cache_dir))
    vectors = next((s for s in stores if s.kind == "vectors"), None)
    for ns in namespaces:
        chosen = vectors.select(key=ns) if vectors is not None else []
        if len(chosen) != 1:
            raise EmbctlError(f"--namespace {ns}: {'several' if chosen else 'no'} vector caches "
                              "match")
        plan += vectors.plan_removal(chosen)
    if prune:
        for store in stores:
            plan += store.plan_prune(selected.get(store.kind) or None)
    return plan
