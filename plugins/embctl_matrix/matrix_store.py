"""The matrix store: token-embedding matrices under ``EMBCTL_HOME/matrices``, registered
through ``register_stores`` (``ls``, ``du``, ``rm`` and ``verify`` visit it).

Listing reads headers with json/struct only; ``embctl_matrix.matrices.scan`` is imported only
when the folder holds something.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embctl.plugin import FolderStore

if TYPE_CHECKING:
    from embctl.plugin import Entry, Model, VerifyOptions
    from embctl_matrix.matrices.verify import MatrixCheck


class MatrixStore(FolderStore):
    """Matrices under ``root`` (default: ``EMBCTL_HOME/matrices``)."""

    kind = "matrix"
    du_lines = (("matrices", "matrices"),)
    noun, nouns = "matrix", "matrices"

    def default_folder(self) -> Path:
        from embctl_matrix.matrices.paths import matrices_dir

        return matrices_dir()  # under EMBCTL_HOME, whichever model cache is used

    def read(self) -> list[Entry]:
        """Each matrix, and each interrupted pull (its partial files grouped: one row)."""
        from embctl_matrix.matrices.scan import matrix_entries

        return matrix_entries(self.root)

    def matches(self, entry: Entry, model: Model | None, key: str | None) -> bool:
        from embctl_matrix.matrices.scan import matches

        return matches(entry, model, key)

    def check(self, entry: Entry, options: VerifyOptions) -> MatrixCheck:
        """The matrix's data against the sha256 in its header; ``repair`` pulls a bad one
        again and deletes stale .npy files."""
        from embctl_matrix.matrices.verify import check_entry

        return check_entry(entry, repair=options.repair)

    def files(self, entry: Entry) -> list[Path]:
        """The matrix with its .npy, tokenizer and partial files."""
        from embctl_matrix.matrices.store import matrix_files

        return matrix_files(Path(entry.path))
