"""Which files of a Hub repo a sentence-transformers model needs.

sentence-transformers loads: the configs and tokenizer files at the top level, the module
folders named in ``modules.json`` (``1_Pooling/``, ``2_Normalize/``, ...), and one set of
weights: safetensors when the repo has them, else ``pytorch_model.bin``.  Exports for other
runtimes (ONNX, OpenVINO, TensorFlow, Flax, Rust) are never needed; on all-MiniLM-L6-v2 they are
over 90% of the repo's bytes.
"""

from __future__ import annotations

import posixpath
import re

MODULE_DIR = re.compile(r"\d+_[A-Za-z0-9_]+")

EXPORT_DIRS = ("onnx/", "openvino/", "coreml/", "tflite/")
EXPORT_FILES = ("tf_model.h5", "flax_model.msgpack", "rust_model.ot", "model.ckpt")
EXPORT_SUFFIXES = (".onnx", ".h5", ".msgpack", ".ot", ".ckpt", ".tflite", ".mlmodel", ".xml")
TOKENIZER_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".py", ".md")


def _is_export(path: str) -> bool:
    name = posixpath.basename(path)
    return (
        path.startswith(EXPORT_DIRS)
        or "/onnx/" in path
        or "/openvino/" in path
        or name in EXPORT_FILES
        or name.endswith(EXPORT_SUFFIXES)
    )


def _weights(paths: list[str], folder: str) -> list[str]:
    """The one set of weights in ``folder`` ('' for the top level): safetensors first."""

    def in_folder(p: str) -> bool:
        return posixpath.dirname(p) == folder.rstrip("/")

    st = [p for p in paths if in_folder(p) and p.endswith(".safetensors")]
    if st:
        index = [p for p in paths if in_folder(p) and p.endswith(".safetensors.index.json")]
        return st + index
    return [
        p
        for p in paths
        if in_folder(p) and posixpath.basename(p).startswith("pytorch_model") and
        (p.endswith(".bin") or p.endswith(".bin.index.json"))
    ]


def select_files(paths: list[str]) -> list[str]:
    """Return the subset of ``paths`` (repo-relative, '/'-separated) that the model needs."""
    wanted: list[str] = []
    # Module folders as sentence-transformers writes them: 1_Pooling, 2_Dense, 0_BERT, ...
    folders = {
        posixpath.dirname(p)
        for p in paths
        if MODULE_DIR.fullmatch(posixpath.dirname(p)) and not _is_export(p)
    }
    for path in paths:
        if _is_export(path) or path.startswith("."):
            continue
        folder = posixpath.dirname(path)
        if folder and folder not in folders:
            continue
        if path.endswith(TOKENIZER_SUFFIXES) and not path.endswith(".index.json"):
            wanted.append(path)
    for folder in sorted({""} | folders):
        wanted.extend(_weights(paths, folder))
    seen: set[str] = set()
    return [p for p in wanted if not (p in seen or seen.add(p))]
