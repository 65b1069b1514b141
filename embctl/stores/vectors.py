"""The vector cache store: one SQLite file per namespace under ``EMBCTL_HOME/vectors``.

``embctl.vectors.scan`` (and with it sqlite3) is imported only when there are caches, so
``ls`` and ``du`` pay nothing for an empty store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embctl.backends import Model
    from embctl.inventory import Entry
    from embctl.stores.base import Scope, VerifyOptions, VerifyReport
    from embctl.stores.plan import RemovalPlan


def has_files(path: Path) -> bool:
    try:
        return any(path.iterdir())
    except OSError:
        return False


class VectorCacheStore:
    """Vector caches under ``root`` (default: ``EMBCTL_HOME/vectors``)."""

    kind = "vectors"
    du_lines = (("vectors", "vector caches"),)
    du_optional: frozenset[str] = frozenset()

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder

    @classmethod
    def open(cls, cache_dir: Path) -> VectorCacheStore:
        return cls()  # under EMBCTL_HOME, whichever model cache is used

    @property
    def root(self) -> Path:
        from embctl.paths import vectors_dir

        return self.folder or vectors_dir()

    def scan(self) -> list[Entry]:
        if not has_files(self.root):
            return []
        from embctl.vectors.scan import vector_entries

        return vector_entries(self.root)

    def select(self, model: Model | None = None, key: str | None = None) -> list[Entry]:
        """The caches of a model (any options; one commit when the reference pins one), or the
        one whose namespace id starts with ``key``."""
        if not has_files(self.root):
            return []
        from embctl.vectors.scan import select_vectors

        return select_vectors(model, key, self.root)

    def named_by(self, model: Model, scope: Scope) -> bool:
        # A remote API (openai:) keeps no model files: its vector caches are what REF names.
        from embctl.registry import get_backend

        return scope != "default" or not get_backend(model.backend).hub

    def verify(self, entries: list[Entry], options: VerifyOptions) -> VerifyReport:
        from embctl.stores.base import VerifyReport
        """SQLite's integrity check and every vector's values (NaN, inf, zero, dimension);
        ``repair`` deletes bad vectors and salvages damaged files."""
        from embctl.vectors.scan import check_vectors

        checks = check_vectors(entries, repair=options.repair) if entries else []
        from embctl.console import plural

        return VerifyReport({"vector_caches": len(checks)}, plural(len(checks), "vector cache"),
                            tuple(c for c in checks if not c.ok))

    def forget_revision(self, repo_id: str, commit: str, backend: str | None = None
                        ) -> list[Entry]:
        """Vectors computed before a repair of their model (only ``backend``'s, when
        given): no longer to be served."""
        if not has_files(self.root):
            return []
        from embctl.vectors.scan import drop_revision

        return drop_revision(repo_id, commit, root=self.root, backend=backend)

    def plan_removal(self, entries: list[Entry], model: Model | None = None) -> RemovalPlan:
        from embctl.stores.plan import RemovalPlan, remove_files
        from embctl.vectors.scan import vector_files

        return RemovalPlan(tuple(remove_files(self.kind, self.root, e, vector_files(e))
                                 for e in entries))

    def plan_prune(self, entries: list[Entry] | None = None) -> RemovalPlan:
        from embctl.stores.plan import RemovalPlan

        return RemovalPlan()

    def usage(self) -> dict[str, int]:
        return {"vectors": sum(e.size_bytes for e in self.scan())}
