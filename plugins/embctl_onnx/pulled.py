"""After a pull, and for an export: the ONNX file a variant needs, from the snapshot or, for a
repo that ships none, from the export embctl makes (``embctl_onnx.exported``, imported only
on that path: it needs torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embctl.plugin import EmbctlError, Model
from embctl_onnx.locate import exported_module, find_export, present
from embctl_onnx.variants import preferred_files


def after_pull(model: Model, result: Any, options: dict[str, Any]) -> None:
    """A pulled snapshot without the variant's ONNX file: export it (into embctl's own
    files, never the snapshot), unless an export of this commit exists already."""
    variant = options.get("variant") or "fp32"
    snapshot = Path(result.path)
    rel = present(snapshot, variant)
    if rel is not None:
        result.extra["onnx_file"] = rel
        return
    export = find_export(model.repo_id, result.commit, variant)
    if export is None:
        module = exported_module()
        if module is None:
            raise EmbctlError(
                f"{model.ref}: the repo has no {variant} ONNX file "
                f"({', '.join(preferred_files(variant)[:2])}...), and this embctl cannot "
                "export one")
        export = module.export_model(snapshot, model.repo_id, result.commit, variant,
                                     quiet=bool(options.get("quiet")))
    result.extra["onnx_file"] = str(export.path)
    result.extra["exported"] = True


def export_files(model: Model, snapshot: Path, options: dict[str, Any]) -> dict[str, Path]:
    """What ``embctl export onnx:REF --to DIR`` adds to the snapshot's files: an export of a
    repo without ONNX files, under the name the repo would give it.  The variant's file must
    be there (in the snapshot or exported)."""
    variant = options.get("variant") or "fp32"
    if present(snapshot, variant) is not None:
        return {}
    export = find_export(model.repo_id, snapshot.name, variant)
    if export is None:
        raise EmbctlError(f"{model.ref}: no {variant} ONNX file in the cache; pull it first: "
                          f"embctl pull {model.ref} --variant {variant}")
    name = "onnx/model.onnx" if variant == "fp32" else "onnx/model_quantized.onnx"
    return {name: Path(export.path)}
