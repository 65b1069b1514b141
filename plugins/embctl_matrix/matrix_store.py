"""The matrix store: token-embedding matrices under ``EMBCTL_HOME/matrices``, registered
through ``register_stores`` (``ls``, ``du``, ``rm`` and ``verify`` visit it).

Listing reads headers with json/struct only; ``embctl_matrix.matrices.scan`` is imported only
when the folder holds something.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embctl.plugin import has_files

if TYPE_CHECKING:
    from embctl.plugin import Entry, Model, RemovalPlan, Scope, VerifyOptions, VerifyReport


class MatrixStore:
    """Matrices under ``root`` (default: ``EMBCTL_HOME/matrices``)."""

    kind = "matrix"
    du_lines = (("matrices", "matrices"),)
    du_optional: frozenset[str] = frozenset()

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder

    @classmethod
    def open(cls, cache_dir: Path) -> MatrixStore:
        return cls()  # under EMBCTL_HOME, whichever model cache is used

    @property
    def root(self) -> Path:
        from embctl_matrix.matrices.paths import matrices_dir

        return self.folder or matrices_dir()

    def scan(self) -> list[Entry]:
        if not has_files(self.root):
            return []
        from embctl_matrix.matrices.scan import matrix_entries

        return matrix_entries(self.root)

    def select(self, model: Model | None = None, key: str | None = None) -> list[Entry]:
        """The matrices of ``matrix:A+B`` (every revision unless it pins one), or the one
        whose cache key starts with ``key``."""
        if not has_files(self.root):
            return []
        from embctl_matrix.matrices.scan import select_matrices

        return select_matrices(model, key, self.root)

    def named_by(self, model: Model, scope: Scope) -> bool:
        return scope != "vectors"

    def verify(self, entries: list[Entry], options: VerifyOptions) -> VerifyReport:
        """Each matrix's data against the sha256 in its header; ``repair`` pulls a bad one
        again and deletes stale .npy files."""
        from embctl.plugin import VerifyReport
        from embctl_matrix.matrices.verify import check_entry

        checks = [check_entry(e, repair=options.repair) for e in entries]
        n = len(checks)
        return VerifyReport({"matrices": n}, f"{n} matri{'x' if n == 1 else 'ces'}",
                            tuple(c for c in checks if not c.ok))

    def forget_revision(self, repo_id: str, commit: str) -> list[Entry]:
        return []

    def plan_removal(self, entries: list[Entry], model: Model | None = None) -> RemovalPlan:
        from embctl.plugin import RemovalPlan, remove_files
        from embctl_matrix.matrices.store import matrix_files

        return RemovalPlan(tuple(remove_files(self.kind, self.root, e,
                                              matrix_files(Path(e.path))) for e in entries))

    def plan_prune(self, entries: list[Entry] | None = None) -> RemovalPlan:
        from embctl.plugin import RemovalPlan

        return RemovalPlan()

    def usage(self) -> dict[str, int]:
        return {"matrices": sum(e.size_bytes for e in self.scan())}
