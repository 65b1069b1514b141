"""embctl's stores behind one interface (:class:`embctl.stores.base.Store`).

The core's stores (models, vector caches) come first, then those plugins register through the
``register_stores`` hook (``embctl_matrix`` registers the matrices); ``ls``, ``du``, ``rm``
and ``verify`` loop over them, in this order.  The scanners (``embctl.models.scan``,
``embctl.vectors.scan``) build the rows and know nothing of this package.

    embctl.stores.base           the Store protocol, VerifyOptions, VerifyReport
    embctl.stores.plan           RemovalPlan: what goes, the bytes it frees, execute()
    embctl.stores.folder         FolderStore: the base of a store that is a folder of items
    embctl.stores.models         Hub model repos in the Hugging Face cache
    embctl.stores.model_removal  planning a repo's, a revision's, or --prune's removal
    embctl.stores.vectors        vector caches under EMBCTL_HOME/vectors
    embctl.stores.plugged        the stores plugins register, each failure one warning
    embctl.stores.rm             rm: which stores a reference names, one plan for all
    embctl.stores.check          verify: selection, the loop, vectors dropped after a repair
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embctl.stores.models import ModelStore
from embctl.stores.vectors import VectorCacheStore

if TYPE_CHECKING:
    from embctl.inventory import Entry
    from embctl.stores.base import Store

#: The core's stores, first in the order every command visits the stores.
CORE_STORES = (ModelStore, VectorCacheStore)


def store_classes() -> tuple[type[Store], ...]:
    """Every store class: the core's, then the plugins' (loading the plugins once)."""
    from embctl.stores.plugged import plugin_stores

    return (*CORE_STORES, *plugin_stores(CORE_STORES))


def open_stores(cache_dir: Path, *, listing: bool = False) -> list[Store]:
    """Every store, with the model cache at ``cache_dir``; a plugin store that fails to open
    is left out, with one warning.  ``listing`` (``ls``): the plugins' stores only when
    EMBCTL_HOME holds something that is not the core's (else they have nothing to list)."""
    from embctl.stores.plugged import home_holds_more, open_guarded

    core = [store.open(cache_dir) for store in CORE_STORES]
    if listing and not home_holds_more():
        return core
    return [*core, *open_guarded(cache_dir, CORE_STORES)]


def scan_all(stores: list[Store]) -> list[Entry]:
    """``ls``: every entry of every store (a plugin store whose scan fails: none, warned)."""
    from embctl.stores.plugged import guarded

    return [entry for store in stores for entry in guarded(store, "scan", store.scan, [])]


def du_lines(stores: list[Store]) -> list[tuple[str, str, bool]]:
    """``du``'s lines, as (key, label, optional): every store's main line, then the others."""
    lines = [store.du_lines[0] + (False,) for store in stores]
    lines += [(key, label, key in store.du_optional)
              for store in stores for key, label in store.du_lines[1:]]
    return lines


def disk_usage(stores: list[Store]) -> dict[str, int]:
    """``du``: bytes by category, in ``du_lines`` order, and their total."""
    from embctl.stores.plugged import guarded

    found: dict[str, int] = {}
    for store in stores:
        found.update(guarded(store, "usage", store.usage, {}))
    usage = {key: found.get(key, 0) for key, _label, _optional in du_lines(stores)}
    usage["total"] = sum(usage.values())
    return usage
