"""The store of ONNX exports under ``EMBCTL_HOME/onnx-exports``, registered through
``register_stores``: ``ls`` lists them, ``du`` counts them, ``rm onnx:REF`` removes them with
the model, ``rm --prune`` removes interrupted exports and exports whose snapshot is gone, and
``verify`` hashes their files against their manifests (``--repair``: export again when the
snapshot and torch are there, else delete, so the next pull exports it again); an export made
from files a repair of the model replaced is exported again, or marked stale (``rebuild``):
what an export was made from is known, so ``forget_revision`` drops nothing.

Cheap to import (standard library and embctl's leaf modules): ``ls`` and ``du`` import it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from embctl.plugin import FolderStore

if TYPE_CHECKING:
    from embctl.plugin import Entry, Model, Removal, VerifyOptions, VerifyReport
    from embctl_onnx.exports.scan import ExportCheck


class OnnxExportStore(FolderStore):
    """ONNX exports under ``root`` (default: ``EMBCTL_HOME/onnx-exports/v1``); ``cache_dir``
    is the Hub cache, where an export's snapshot is."""

    kind = "onnx-export"
    du_lines = (("onnx_exports", "ONNX exports"),)
    noun = "ONNX export"
    key_field = "sha256"

    def default_folder(self) -> Path:
        from embctl_onnx.exports.layout import exports_dir

        return exports_dir()

    def read(self) -> list[Entry]:
        """Every bucket (``models--org--name/<revision>/<variant>``) and interrupted export."""
        from embctl_onnx.exports.scan import export_entries

        return export_entries(self.root)

    def matches(self, entry: Entry, model: Model | None, key: str | None) -> bool:
        """The exports of ``onnx:REF`` (every revision and variant unless it pins a commit),
        or the one whose sha256 starts with ``key``."""
        from embctl_onnx.exports.scan import matches

        return matches(entry, model, key)

    def check(self, entry: Entry, options: VerifyOptions) -> ExportCheck:
        from embctl_onnx.exports.repair import check_export

        return check_export(entry, self.cache_dir, repair=options.repair)

    def verify(self, entries: list[Entry], options: VerifyOptions) -> VerifyReport:
        report = super().verify(entries, options)
        # A stale export was used by nothing since it was marked: exporting it again
        # invalidates no vector (the onnx backend's vectors are keyed by the export's sha256).
        damaged = tuple(dict.fromkeys((c.entry.repo_id, c.entry.revision, c.entry.ref)
                                      for c in report.problems if c.repaired
                                      and c.entry.status not in ("incomplete", "stale")
                                      and c.entry.repo_id and c.entry.revision))
        return replace(report, damaged=damaged,
                       reaches="onnx")  # an export feeds only the onnx backend

    def rebuild(self, repo_id: str, commit: str, paths: tuple[str, ...],
                options: VerifyOptions) -> list:
        """Exports made from files a repair replaced: exported again, or marked stale where
        torch is missing (``exports.repair.rebuild``)."""
        from embctl_onnx.exports.repair import rebuild

        return rebuild(self.scan(), self.cache_dir, repo_id, commit, paths)

    def removal(self, entry: Entry) -> Removal:
        """The export's folder, shown with its path; then the revision and repo folders it
        leaves empty."""
        from embctl_onnx.exports.repair import drop_empty

        folder = Path(entry.path)
        return replace(super().removal(entry), revision=entry.revision, show_path=True,
                       finish=lambda: drop_empty(folder.parent))

    def prunable(self, entry: Entry) -> bool:
        """Interrupted exports nobody is writing, and exports whose snapshot has left the
        Hub cache (the onnx backend reads the configs and tokenizer from it)."""
        from embctl_onnx.exports.repair import prunable

        return prunable(entry, self.cache_dir)
