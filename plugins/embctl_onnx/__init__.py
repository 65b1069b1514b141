"""ONNX Runtime backend (``onnx:``): torch-free embeddings with onnxruntime + tokenizers.

``onnx:all-MiniLM-L6-v2`` (a bare name is a sentence-transformers model, as for ``st``) runs
the repo's ``onnx/model.onnx``; ``-O variant=int8`` (``--variant int8``) its int8 file for
this CPU.  Nothing heavy is imported here: ``embctl ls`` imports every plugin.
"""

from __future__ import annotations

from embctl.plugin import Backend, Option, hookimpl
from embctl_onnx.variants import VARIANTS

OPTIONS = (
    Option("device", str, "cpu", "cpu, cuda or cuda:N (cuda needs onnxruntime-gpu)"),
    Option("variant", str, "fp32", "fp32 (onnx/model.onnx) or int8 (the repo's quantized "
           "file for this CPU)", choices=VARIANTS),
    Option("normalize", bool, False, "L2-normalize the vectors (on already when the model "
           "has a Normalize module)"),
    Option("truncate_dim", int, None, "keep the first N dimensions (Matryoshka models)",
           minimum=1),
    Option("threads", int, None, "onnxruntime intra-op threads (default: physical cores)",
           minimum=1),
)


def _select_files(paths: list[str], options: dict) -> list[str]:
    from embctl_onnx.files import select_files

    return select_files(paths, options)


def _load(model, options):
    from embctl_onnx.embedder import load

    return load(model, options)


def _after_pull(model, result, options) -> None:
    from embctl_onnx.pulled import after_pull

    after_pull(model, result, options)


def _export_files(model, snapshot, options):
    from embctl_onnx.pulled import export_files

    return export_files(model, snapshot, options)


@hookimpl
def register_backends(register):
    register(Backend(
        name="onnx",
        description="sentence-transformers models run by onnxruntime (no torch)",
        bare_org="sentence-transformers",
        select_files=_select_files,
        pull_options=("variant",),
        after_pull=_after_pull,
        export_files=_export_files,
        load=_load,
        options=OPTIONS,
    ))


# The store of ONNX exports (repos without ONNX weights): ls, du, rm and verify see them.
from embctl_onnx.exports.hooks import register_stores  # noqa: E402, F401, I001
