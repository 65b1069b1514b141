"""embctl's three stores behind one interface (:class:`embctl.stores.base.Store`).

``STORES`` is the one registry: ``ls``, ``du``, ``rm`` and ``verify`` loop over it, in this
order.  The scanners (``embctl.models.scan``, ``embctl.vectors.scan``,
``embctl.matrices.scan``) build the rows and know nothing of this package.

    embctl.stores.base           the Store protocol, VerifyOptions, VerifyReport
    embctl.stores.plan           RemovalPlan: what goes, the bytes it frees, execute()
    embctl.stores.models         Hub model repos in the Hugging Face cache
    embctl.stores.model_removal  planning a repo's, a revision's, or --prune's removal
    embctl.stores.vectors        vector caches under EMBCTL_HOME/vectors
    embctl.stores.matrices       matrices under EMBCTL_HOME/matrices
    embctl.stores.rm             rm: which stores a reference names, one plan for all
    embctl.stores.check          verify: selection, the loop, vectors dropped after a repair
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embctl.stores.matrices import MatrixStore
from embctl.stores.models import ModelStore
from embctl.stores.vectors import VectorCacheStore

if TYPE_CHECKING:
    from embctl.inventory import Entry
    from embctl.stores.base import Store

#: The stores, in the order every command visits them.
STORES = (ModelStore, VectorCacheStore, MatrixStore)


def open_stores(cache_dir: Path) -> list[Store]:
    """Every store, with the model cache at ``cache_dir``."""
    return [store.open(cache_dir) for store in STORES]


def scan_all(stores: list[Store]) -> list[Entry]:
    """``ls``: every entry of every store."""
    return [entry for store in stores for entry in store.scan()]


def disk_usage(stores: list[Store]) -> dict[str, int]:
    """``du``: bytes by category (each store's), and their total."""
    usage: dict[str, int] = {}
    for store in stores:
        usage.update(store.usage())
    usage["total"] = sum(usage.values())
    return usage
