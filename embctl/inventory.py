"""One row of the inventory of everything embctl manages: models, vector caches, and what
plugins' stores hold.

A leaf module (standard library only): the scanners (``embctl.models.scan``,
``embctl.vectors.scan``, and the plugins' own) build :class:`Entry` rows, and
``embctl.stores`` gathers them for ``ls``, ``du``, ``rm`` and ``verify``.  The kinds a row can
have are the stores' (``embctl.stores.store_classes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

#: Every status a row can have ("empty": a repo folder with no snapshot and no download;
#: "stale": made from a file a repair replaced, and not made again yet).
STATUSES = ("ok", "partial", "incomplete", "broken", "empty", "stale")


@dataclass(frozen=True)
class Entry:
    """One thing in a store, as a scan found it (immutable: a later scan makes new rows)."""

    kind: str  # its store's kind: "model", "vectors", or a plugin store's
    ref: str  # what to type to use or remove it: alias, repo id, or backend:id
    repo_id: str | None
    backend: str | None
    revision: str | None  # full commit hash when known
    dim: int | None
    size_bytes: int
    path: str
    last_used: float | None = None  # epoch seconds
    count: int | None = None  # vectors in a cache
    status: str = "ok"  # one of STATUSES
    extra: dict[str, Any] = field(default_factory=dict)
    #: What tells it apart from rows of the same name, for people (``ls``'s NOTES column, the
    #: lines of ``rm``'s plan): a vector cache's namespace id and prefix.  ``--json`` has the
    #: fields it is made from instead.
    notes: str = ""
    #: What the store scanned to make this row (a model's CachedRepo); never shown.
    source: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("extra", "source", "notes")}
        data.update(self.extra)
        return data
