"""Which files of a Hub repo an ``onnx:`` pull fetches.

The configs and the tokenizer at the top level, the sentence-transformers module configs
(``modules.json``, ``1_Pooling/config.json``, a ``2_Dense`` folder's config and safetensors
weights), and exactly one ONNX file: the variant's, for this CPU (:mod:`embctl_onnx.variants`).
Never the torch weights, ``openvino/``, the other ONNX files or READMEs.

A repo with no ONNX file for the variant needs an export: then the pull fetches what the export
reads instead, the configs, the tokenizer and one set of torch weights (safetensors first), as
the ``st`` backend would.
"""

from __future__ import annotations

import posixpath
import re

from embctl_onnx.variants import pick

#: Module folders as sentence-transformers writes them: 1_Pooling, 2_Dense, 2_Normalize...
MODULE_DIR = re.compile(r"\d+_[A-Za-z0-9_]+")
CONFIG_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")


def _is_config(path: str) -> bool:
    folder, name = posixpath.split(path)
    if name.startswith(".") or name.endswith(".index.json") or not name.endswith(CONFIG_SUFFIXES):
        return False
    return not folder or bool(MODULE_DIR.fullmatch(folder))


def _dense_weights(paths: list[str]) -> list[str]:
    """A Dense module's weights are part of the model: the ONNX graph is only the transformer."""
    return [p for p in paths if MODULE_DIR.fullmatch(posixpath.dirname(p))
            and "dense" in posixpath.dirname(p).lower() and p.endswith(".safetensors")]


def _torch_weights(paths: list[str]) -> list[str]:
    """One set of top-level weights for an export: safetensors first, else pytorch_model*.bin."""
    top = [p for p in paths if "/" not in p]
    st = [p for p in top if p.endswith(".safetensors") or p.endswith(".safetensors.index.json")]
    if any(p.endswith(".safetensors") for p in st):
        return st
    return [p for p in top if p.startswith("pytorch_model")
            and (p.endswith(".bin") or p.endswith(".bin.index.json"))]


def onnx_file(paths: list[str], variant: str) -> str | None:
    """The repo's ONNX file for ``variant`` on this CPU (and its external-data file, if any,
    is ``<file>_data`` or ``<file>.data``: see :func:`select_files`)."""
    return pick(paths, variant)


def support_files(paths: list[str]) -> list[str]:
    """What the vectors depend on besides the ONNX file: configs, tokenizer, Dense weights."""
    return [p for p in paths if _is_config(p)] + _dense_weights(paths)


#: The fast tokenizer the backend tokenizes with (``runtime.make_tokenizer``).
TOKENIZER = "tokenizer.json"


def select_files(paths: list[str], options: dict | None = None) -> list[str]:
    """Of every file in the repo, those a pull of ``variant`` (options; default fp32) needs.
    A repo without ``tokenizer.json`` is refused here, before anything is downloaded (and
    a bad ``EMBCTL_ONNX_CPU`` too)."""
    from embctl.plugin import EmbctlError
    from embctl_onnx.variants import forced_cpu

    forced_cpu()
    if TOKENIZER not in paths:
        raise EmbctlError(f"the repo has no {TOKENIZER}, the fast tokenizer the onnx backend "
                          "needs; nothing was pulled (the st backend can run it)")
    variant = (options or {}).get("variant") or "fp32"
    wanted = support_files(paths)
    chosen = onnx_file(paths, variant)
    if chosen is None:
        wanted += _torch_weights(paths)  # for the export (embctl_onnx.exported)
    else:
        wanted.append(chosen)
        # Models over 2 GB keep their weights in an external-data file beside the graph.
        wanted += [p for p in paths if p in (chosen + "_data", chosen + ".data")]
    seen: set[str] = set()
    return [p for p in wanted if not (p in seen or seen.add(p))]
