"""Finding a model's ONNX file and configs for ``load``: in the Hub cache (pulling the variant
when it is missing), or an export embctl made of a repo that ships no ONNX file.

The vectors' identity is the ONNX file's sha256: for a Hub cache blob of an LFS file that is
its name (nothing to hash); an export records its own.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embctl.plugin import EmbctlError, Model
from embctl_onnx.variants import preferred_files, variant_of

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A snapshot holding one of these is a model (configs pulled).
CONFIG_MARKERS = ("config.json", "modules.json", "tokenizer.json")


@dataclass(frozen=True)
class OnnxFiles:
    root: Path  # the model's folder: configs, tokenizer
    revision: str  # the commit (or a local folder's fingerprint)
    onnx: Path  # the ONNX file
    onnx_label: str  # how messages name it: onnx/model.onnx, or the export's path
    variant: str  # fp32 or int8
    sha256: str
    model_files: list[Path] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    """The sha256 of a file: its blob's name when it is a Hub cache blob of an LFS file."""
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and _SHA256.fullmatch(real.name):
        return real.name
    h = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def present(root: Path, variant: str) -> str | None:
    """The variant's file in ``root`` (a snapshot or local folder), best for this CPU."""
    return next((p for p in preferred_files(variant) if (root / p).is_file()), None)


def _config_files(root: Path) -> list[Path]:
    """The files besides the ONNX file that the vectors depend on: configs, tokenizer, Dense
    weights (not the torch weights an st pull of the same repo left beside them)."""
    from embctl_onnx.files import support_files

    found = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(root / p for p in support_files(found))


def _from_snapshot(root: Path, revision: str, rel: str) -> OnnxFiles:
    path = root / rel
    extra = [p for p in (root / (rel + "_data"), root / (rel + ".data")) if p.exists()]
    return OnnxFiles(root, revision, path, rel, variant_of(rel), file_sha256(path),
                     [*_config_files(root), path, *extra])


def _from_export(root: Path, revision: str, export: Any) -> OnnxFiles:
    path = Path(export.path)
    return OnnxFiles(root, revision, path, str(path), export.variant, export.sha256,
                     [*_config_files(root), path])


def exported_module() -> Any | None:
    """``embctl_onnx.exported`` (exports of repos without ONNX files), or None where this
    embctl has none.  Imported only on the paths that need it."""
    import importlib

    try:
        return importlib.import_module("embctl_onnx.exported")
    except ModuleNotFoundError as exc:
        if exc.name != "embctl_onnx.exported":
            raise
        return None


def find_export(repo_id: str, revision: str, variant: str) -> Any | None:
    """The export embctl made of a repo without ONNX files, if any."""
    module = exported_module()
    return module.find_export(repo_id, revision, variant) if module is not None else None


def locate_onnx(model: Model, options: dict[str, Any]) -> OnnxFiles:
    """The files of ``model`` for ``options['variant']``: a cached snapshot holding the
    variant's file, else an export of the cached snapshot, else pulled (only what the variant
    needs; a repo without ONNX files is exported by the pull)."""
    variant = options.get("variant") or "fp32"
    if model.local_path:
        root = Path(model.local_path)
        from embctl.plugin import dir_fingerprint

        rel = present(root, variant)
        if rel is None:
            raise EmbctlError(f"{model.ref}: no {variant} ONNX file in {root} (looked for "
                              f"{', '.join(preferred_files(variant)[:3])}...)")
        return _from_snapshot(root, "local-" + dir_fingerprint(root), rel)
    from embctl.plugin import cached_snapshot, hub_cache_dir, locate

    cache = hub_cache_dir(options.get("cache_dir"))
    found = cached_snapshot(model, cache, preferred_files(variant))
    if found is None:
        base = cached_snapshot(model, cache, CONFIG_MARKERS)
        export = find_export(model.repo_id, base[1], variant) if base else None
        if base and export is not None:
            return _from_export(base[0], base[1], export)
        found = locate(model, options.get("cache_dir"), quiet=bool(options.get("quiet")),
                       markers=preferred_files(variant), options={"variant": variant})
    root, revision = found
    rel = present(root, variant)
    if rel is not None:
        return _from_snapshot(root, revision, rel)
    export = find_export(model.repo_id, revision, variant)
    if export is not None:
        return _from_export(root, revision, export)
    raise EmbctlError(f"{model.ref}@{revision[:8]}: no {variant} ONNX file, and no export of "
                      f"it; pull it: embctl pull {model.ref} --variant {variant}")
