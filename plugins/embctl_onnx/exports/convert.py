"""Turning a sentence-transformers snapshot's transformer into ONNX (torch), and an fp32 ONNX
file into int8 (onnxruntime's dynamic quantization).

The heavy libraries are imported inside the functions: torch, transformers and onnx only by
:func:`export_fp32`, onnxruntime only by :func:`quantize_int8`.  Callers check first that they
can be imported (:func:`missing_for`), so a machine without torch gets one line, not a
traceback.
"""

from __future__ import annotations

import importlib
import json
import platform
from pathlib import Path

#: The ONNX opset of an export: supported by every onnxruntime embctl accepts (>= 1.17).
OPSET = 17
#: The graph every export has (what the onnx backend expects of a repo's own ONNX file too).
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "last_hidden_state"
#: What each variant needs, as importable modules, and the pip names that bring them.
NEEDS = {"fp32": ("torch", "transformers", "onnx"),
         "int8": ("torch", "transformers", "onnx", "onnxruntime"),
         "quantize": ("onnx", "onnxruntime")}  # int8 from an fp32 export already made
INSTALL = 'pip install torch==2.13.0 "embctl[onnx-export]"'


def missing_for(variant: str) -> list[str]:
    """The modules an export of ``variant`` needs that cannot be imported here (importing them
    is the only honest test: a broken or shadowed install fails there, not in find_spec)."""
    missing = []
    for name in NEEDS[variant]:
        try:
            importlib.import_module(name)
        except Exception:  # ImportError, or a broken install raising anything at import
            missing.append(name)
    return missing


def transformer_folder(snapshot: Path) -> Path:
    """The folder of the snapshot's Transformer module (``modules.json``; the top level when
    the snapshot has no modules.json or names no Transformer)."""
    try:
        modules = json.loads((snapshot / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return snapshot
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Transformer"):
            return snapshot / str(module.get("path") or "")
    return snapshot


def export_fp32(snapshot: Path, target: Path) -> dict:
    """Write the transformer of ``snapshot`` to ``target`` as ONNX (fp32); return what the
    manifest records of how it was made."""
    import inspect

    import torch
    import transformers

    folder = transformer_folder(snapshot)
    model = transformers.AutoModel.from_pretrained(str(folder), attn_implementation="eager")
    model.eval()
    accepted = inspect.signature(model.forward).parameters
    names = [n for n in INPUTS if n in accepted]
    if "input_ids" not in names or "attention_mask" not in names:
        raise ValueError(f"{type(model).__name__} takes no input_ids/attention_mask")

    class Keyword(torch.nn.Module):
        """Positional ONNX inputs passed on by keyword (transformers 5 wants keywords), and
        only the last hidden state out."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

    vocab = int(getattr(model.config, "vocab_size", 100) or 100)
    ids = torch.randint(low=min(5, vocab - 1), high=vocab, size=(2, 16), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    sample = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, OUTPUT]}
    with torch.no_grad():
        torch.onnx.export(Keyword(model), tuple(sample[n] for n in names), str(target),
                          input_names=names, output_names=[OUTPUT], dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return {"inputs": names, "output": OUTPUT, "opset": OPSET,
            "architecture": type(model).__name__, "torch": torch.__version__,
            "transformers": transformers.__version__}


def int8_weight_type() -> str:
    """QUInt8 weights on x86 (what the Hub's ``*_quint8_avx2`` files use), QInt8 on ARM."""
    machine = platform.machine().lower()
    return "QInt8" if machine.startswith(("arm", "aarch")) else "QUInt8"


def quantize_int8(source: Path, target: Path) -> dict:
    """Dynamic int8 quantization of the fp32 export ``source``, written to ``target``: the
    MatMul/Gemm weights, per channel (per tensor loses too much: on all-MiniLM-L6-v2 the mean
    cosine to fp32 is 0.980 per tensor, 0.992 per channel; reduce_range costs more)."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight_type = int8_weight_type()
    quantize_dynamic(str(source), str(target), weight_type=getattr(QuantType, weight_type),
                     per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])
    return {"quantization": "dynamic", "weight_type": weight_type, "per_channel": True,
            "onnxruntime": onnxruntime.__version__}
