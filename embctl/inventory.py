"""One listing of everything embctl manages: models, vector caches and matrices.

Each store contributes :class:`Entry` rows (``embctl.models.scan``, ``embctl.vectors.scan``,
``embctl.matrices.scan``); ``ls`` filters, sorts and renders them, ``du`` sums them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("model", "vectors", "matrix")
#: Every status a row can have ("empty": a repo folder with no snapshot and no download).
STATUSES = ("ok", "partial", "incomplete", "broken", "empty")


@dataclass
class Entry:
    kind: str  # "model", "vectors" or "matrix"
    ref: str  # what to type to use or remove it: alias, repo id, or backend:id
    repo_id: str | None
    backend: str | None
    revision: str | None  # full commit hash when known
    dim: int | None
    size_bytes: int
    path: str
    last_used: float | None = None  # epoch seconds
    count: int | None = None  # vectors in a cache
    status: str = "ok"  # "ok", "partial", "incomplete", "broken"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        return data


def _has_files(path) -> bool:
    try:
        return any(path.iterdir())
    except OSError:
        return False


def vector_entries() -> list[Entry]:
    """Vector caches; sqlite3 and the store are imported only when there are some."""
    from embctl.paths import vectors_dir

    if not _has_files(vectors_dir()):
        return []
    from embctl.vectors.scan import vector_entries as scan

    return scan()


def matrix_entries() -> list[Entry]:
    from embctl.paths import matrices_dir

    if not _has_files(matrices_dir()):
        return []
    from embctl.matrices.scan import matrix_entries as scan

    return scan()


def all_entries(cache_dir) -> list[Entry]:
    from embctl.models.scan import model_entries

    return [*model_entries(cache_dir), *vector_entries(), *matrix_entries()]
