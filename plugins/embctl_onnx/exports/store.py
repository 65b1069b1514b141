"""The store of ONNX exports under ``EMBCTL_HOME/onnx-exports``, registered through
``register_stores``: ``ls`` lists them, ``du`` counts them, ``rm onnx:REF`` removes them with
the model, ``rm --prune`` removes interrupted exports and exports whose snapshot is gone, and
``verify`` hashes their files against their manifests (``--repair``: export again when the
snapshot and torch are there, else delete, so the next pull exports it again); an export made
from files a repair of the model replaced is exported again, or marked stale (``rebuild``).

Cheap to import (standard library and embctl's leaf modules): ``ls`` and ``du`` import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embctl.plugin import has_files, plural

if TYPE_CHECKING:
    from embctl.plugin import Entry, Model, RemovalPlan, Scope, VerifyOptions, VerifyReport


class OnnxExportStore:
    """ONNX exports under ``root`` (default: ``EMBCTL_HOME/onnx-exports/v1``)."""

    kind = "onnx-export"
    du_lines = (("onnx_exports", "ONNX exports"),)
    du_optional: frozenset[str] = frozenset()

    def __init__(self, cache_dir: Path | None = None, folder: Path | None = None) -> None:
        self.cache_dir = cache_dir  # the Hub cache: where an export's snapshot is
        self.folder = folder

    @classmethod
    def open(cls, cache_dir: Path) -> OnnxExportStore:
        return cls(cache_dir)

    @property
    def root(self) -> Path:
        from embctl_onnx.exports.layout import exports_dir

        return self.folder or exports_dir()

    def scan(self) -> list[Entry]:
        if not has_files(self.root):
            return []
        from embctl_onnx.exports.scan import export_entries

        return export_entries(self.root)

    def select(self, model: Model | None = None, key: str | None = None) -> list[Entry]:
        """The exports of ``onnx:REF`` (every revision and variant unless it pins a commit),
        or the one whose sha256 starts with ``key``."""
        from embctl_onnx.exports.scan import matches

        return [e for e in self.scan() if matches(e, model, key)]

    def named_by(self, model: Model, scope: Scope) -> bool:
        return scope != "vectors"

    def verify(self, entries: list[Entry], options: VerifyOptions) -> VerifyReport:
        from embctl.plugin import VerifyReport
        from embctl_onnx.exports.repair import check_export

        checks = [check_export(e, self.cache_dir, repair=options.repair) for e in entries]
        bad = tuple(c for c in checks if not c.ok)
        # A stale export was used by nothing since it was marked: exporting it again
        # invalidates no vector (the onnx backend's vectors are keyed by the export's sha256).
        damaged = tuple(dict.fromkeys((c.entry.repo_id, c.entry.revision, c.entry.ref)
                                      for c in bad if c.repaired
                                      and c.entry.status not in ("incomplete", "stale")
                                      and c.entry.repo_id and c.entry.revision))
        n = len(checks)
        return VerifyReport({"onnx_exports": n}, plural(n, "ONNX export"), bad, damaged,
                            reaches="onnx")  # an export feeds only the onnx backend

    def forget_revision(self, repo_id: str, commit: str) -> list[Entry]:
        """Nothing: what an export was made from is known, so ``rebuild`` makes again the
        exports made from the files the repair replaced, and keeps the others."""
        return []

    def rebuild(self, repo_id: str, commit: str, paths: tuple[str, ...],
                options: VerifyOptions) -> list:
        """Exports made from files a repair replaced: exported again, or marked stale where
        torch is missing (``exports.repair.rebuild``)."""
        from embctl_onnx.exports.repair import rebuild

        return rebuild(self.scan(), self.cache_dir, repo_id, commit, paths)

    def plan_removal(self, entries: list[Entry], model: Model | None = None) -> RemovalPlan:
        from embctl.plugin import RemovalPlan
        from embctl_onnx.exports.repair import removal

        return RemovalPlan(tuple(removal(self.root, e) for e in entries))

    def plan_prune(self, entries: list[Entry] | None = None) -> RemovalPlan:
        """Interrupted exports nobody is writing, and exports whose snapshot has left the
        Hub cache (the onnx backend reads the configs and tokenizer from it)."""
        from embctl.plugin import RemovalPlan
        from embctl_onnx.exports.repair import prunable, removal

        chosen = entries if entries is not None else self.scan()
        return RemovalPlan(tuple(removal(self.root, e) for e in chosen
                                 if prunable(e, self.cache_dir)))

    def usage(self) -> dict[str, int]:
        return {"onnx_exports": sum(e.size_bytes for e in self.scan())}
