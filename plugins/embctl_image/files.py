"""Which files of a Hub repo the image backend needs: the safetensors weights (one file or an
index and its shards), ``config.json`` and ``preprocessor_config.json``.  Nothing else: no
PyTorch pickles, TensorFlow/Flax/ONNX exports or READMEs."""

from __future__ import annotations

import posixpath

CONFIGS = ("config.json", "preprocessor_config.json")


def select_files(paths: list[str]) -> list[str]:
    """Return the subset of ``paths`` (repo-relative, '/'-separated) that loading needs."""
    top = [p for p in paths if "/" not in p]
    wanted = [p for p in CONFIGS if p in top]
    index = "model.safetensors.index.json"
    if "model.safetensors" in top:
        wanted.append("model.safetensors")
    elif index in top:
        wanted.append(index)
        wanted += sorted(p for p in top if p.startswith("model-") and p.endswith(".safetensors"))
    else:  # an unusual weights name: every top-level safetensors file
        wanted += sorted(p for p in top if posixpath.splitext(p)[1] == ".safetensors")
    return wanted
