"""The vector cache store: one SQLite file per namespace under ``EMBCTL_HOME/vectors``.

``embctl.vectors.scan`` (and with it sqlite3) is imported only when there are caches, so
``ls`` and ``du`` pay nothing for an empty store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embctl.stores.folder import FolderStore, has_files

if TYPE_CHECKING:
    from embctl.backends import Model
    from embctl.inventory import Entry
    from embctl.stores.base import Scope, VerifyOptions
    from embctl.vectors.scan import VectorCheck


class VectorCacheStore(FolderStore):
    """Vector caches under ``root`` (default: ``EMBCTL_HOME/vectors``)."""

    kind = "vectors"
    du_lines = (("vectors", "vector caches"),)
    noun = "vector cache"
    key_field = "namespace"  # rm --namespace ID: an id or unique prefix

    def default_folder(self) -> Path:
        from embctl.paths import vectors_dir

        return vectors_dir()  # under EMBCTL_HOME, whichever model cache is used

    def read(self) -> list[Entry]:
        """One row a cache file, with the notes that tell caches of one model apart."""
        from embctl.vectors.scan import vector_entries

        return vector_entries(self.root)

    def named_by(self, model: Model, scope: Scope) -> bool:
        # A remote API (openai:) keeps no model files: its vector caches are what REF names.
        from embctl.registry import get_backend

        return scope != "default" or not get_backend(model.backend).hub

    def check(self, entry: Entry, options: VerifyOptions) -> VectorCheck:
        """SQLite's integrity check and every vector's values (NaN, inf, zero, dimension);
        ``repair`` deletes bad vectors and salvages a damaged file."""
        from embctl.vectors.scan import check_vectors

        return check_vectors([entry], repair=options.repair)[0]

    def forget_revision(self, repo_id: str, commit: str, backend: str | None = None
                        ) -> list[Entry]:
        """Vectors computed before a repair of their model (only ``backend``'s, when
        given): no longer to be served."""
        if not has_files(self.root):
            return []
        from embctl.vectors.scan import drop_revision

        return drop_revision(repo_id, commit, root=self.root, backend=backend)

    def files(self, entry: Entry) -> list[Path]:
        from embctl.vectors.scan import vector_files

        return vector_files(entry)
