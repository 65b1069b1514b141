"""ONNX Runtime backend (``onnx:``): torch-free embeddings with onnxruntime + tokenizers.

``onnx:all-MiniLM-L6-v2`` (a bare name is a sentence-transformers model, as for ``st``) runs
the repo's ``onnx/model.onnx``; ``-O variant=int8`` (``--variant int8``) its int8 file for
this CPU.  Nothing heavy is imported here: ``embctl ls`` imports every plugin.
"""

from __future__ import annotations

from typing import Any

from embctl.plugin import Backend, Embedder, Model, Option, hookimpl
from embctl_onnx.variants import VARIANTS

OPTIONS = (
    Option("device", str, "cpu", "cpu, cuda or cuda:N (cuda needs onnxruntime-gpu)"),
    Option("variant", str, "fp32", "fp32 (onnx/model.onnx) or int8 (the repo's quantized "
           "file for this CPU)", choices=VARIANTS, flag="--variant"),
    Option("normalize", bool, False, "L2-normalize the vectors (on already when the model "
           "has a Normalize module)"),
    Option("truncate_dim", int, None, "keep the first N dimensions (Matryoshka models)",
           minimum=1),
    Option("threads", int, None, "onnxruntime intra-op threads (default: physical cores)",
           minimum=1),
)


class OnnxBackend(Backend):
    name = "onnx"
    description = "sentence-transformers models run by onnxruntime (no torch)"
    bare_org = "sentence-transformers"
    options = OPTIONS
    pull_options = ("variant",)

    def select_files(self, paths: list[str], options: dict[str, Any]) -> list[str]:
        from embctl_onnx.files import select_files

        return select_files(paths, options)

    def load(self, model: Model, options: dict[str, Any]) -> Embedder:
        from embctl_onnx.embedder import load

        return load(model, options)

    def after_pull(self, model: Model, result: Any, options: dict[str, Any]) -> None:
        from embctl_onnx.pulled import after_pull

        after_pull(model, result, options)

    def export_files(self, model: Model, snapshot: Any, options: dict[str, Any]
                     ) -> dict[str, Any]:
        from embctl_onnx.pulled import export_files

        return export_files(model, snapshot, options)


@hookimpl
def register_backends(register):
    register(OnnxBackend())


# The store of ONNX exports (repos without ONNX weights): ls, du, rm and verify see them.
from embctl_onnx.exports.hooks import register_stores  # noqa: E402, F401, I001
