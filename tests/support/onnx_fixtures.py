"""Test data for the onnx backend: real ONNX files exported from the real all-MiniLM-L6-v2.

``export_minilm_onnx(folder)`` writes ``model.onnx`` (fp32: ``torch.onnx.export`` of the
transformer, inputs ``input_ids``/``attention_mask``/``token_type_ids``, output
``last_hidden_state``, dynamic batch and sequence axes) and the int8 files onnxruntime's dynamic
quantizer makes of it (MatMul weights per channel; ``QUInt8`` for the avx2 name, ``QInt8`` for
the others, as the public repo's files are).  ``add_onnx_files(repo, built)`` puts them into a
hub repo folder under the public repo's names: the real fp32 file, the real int8 file under the
name this CPU picks, and every other variant (O1..O4, the other int8 names, ``openvino/``) as
decoys of random bytes, which a correct pull never fetches.  ``tiny_graph`` builds a small real
ONNX graph with the ``onnx`` helper API (for the "unexpected inputs/outputs" failure).
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from pathlib import Path

#: The int8 names of the public repo, and the weight type its quantizer used for each.
INT8_FILES = {
    "onnx/model_qint8_avx512_vnni.onnx": "QInt8",
    "onnx/model_qint8_avx512.onnx": "QInt8",
    "onnx/model_quint8_avx2.onnx": "QUInt8",
    "onnx/model_qint8_arm64.onnx": "QInt8",
}
#: Decoys besides the int8 names this CPU does not pick: path -> size.
OTHER_DECOYS = {
    "onnx/model_O1.onnx": 96 * 1024,
    "onnx/model_O2.onnx": 96 * 1024,
    "onnx/model_O3.onnx": 96 * 1024,
    "onnx/model_O4.onnx": 64 * 1024,
    "openvino/openvino_model.xml": 24 * 1024,
    "openvino/openvino_model_qint8_quantized.bin": 128 * 1024,
}


def export_minilm_onnx(folder: Path) -> dict[str, Path]:
    """``{"fp32": model.onnx, "QUInt8": ..., "QInt8": ...}`` in ``folder``, built once
    (reused when the files are already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    out = {"fp32": fp32, "QUInt8": folder / "model_quint8.onnx",
           "QInt8": folder / "model_qint8.onnx"}
    if all(p.is_file() and p.stat().st_size for p in out.values()):
        return out
    import torch
    from transformers import AutoModel

    from .hub import minilm_source

    source = minilm_source()
    model = AutoModel.from_pretrained(str(source)).eval()

    class ByKeyword(torch.nn.Module):
        """transformers 5 takes its inputs by keyword only: the export passes positionals."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 2307, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    types = torch.zeros_like(ids)
    tmp = folder / "model.onnx.tmp"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            ByKeyword(model), (ids, mask, types), str(tmp), dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                          "attention_mask": {0: "batch", 1: "sequence"},
                          "token_type_ids": {0: "batch", 1: "sequence"},
                          "last_hidden_state": {0: "batch", 1: "sequence"}},
        )
    os.replace(tmp, fp32)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for kind in ("QUInt8", "QInt8"):
        part = folder / f"{out[kind].name}.tmp"
        # MatMul weights, per channel: what keeps int8 within ~0.01 cosine of fp32 (per
        # tensor, or with the embedding Gather quantized too, MiniLM drops to ~0.94).
        quantize_dynamic(str(fp32), str(part), weight_type=getattr(QuantType, kind),
                         op_types_to_quantize=["MatMul"], per_channel=True)
        os.replace(part, out[kind])
    return out


def export_key() -> str:
    """What the export reads: this file, the model's files (name, size, mtime) and the
    versions of the libraries that make and quantize the graph."""
    import hashlib
    from importlib.metadata import version

    from .hub import minilm_source

    h = hashlib.sha256(Path(__file__).read_bytes())
    source = minilm_source()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(source)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for dist in ("torch", "transformers", "onnx", "onnxruntime"):
        h.update(f"{dist}=={version(dist)}\n".encode())
    return h.hexdigest()[:16]


def cached_minilm_onnx(config, tmp_path_factory) -> dict[str, Path]:
    """`export_minilm_onnx` into pytest's cache folder, keyed by `export_key`: built once,
    under a file lock (xdist workers wait for the one building it), then reused by every
    session until an input changes.  Without pytest's cache (``-p no:cacheprovider``), in
    this session's temporary folder."""
    from filelock import FileLock

    cache = getattr(config, "cache", None)
    if cache is None:
        return export_minilm_onnx(tmp_path_factory.mktemp("onnx-export"))
    folder = Path(cache.mkdir(f"onnx-export-{export_key()}"))
    with FileLock(str(folder) + ".lock"):
        return export_minilm_onnx(folder)


def picked_int8_name() -> str:
    """The int8 file this machine's onnx backend prefers (what a pull fetches here)."""
    from embctl_onnx.variants import preferred_files

    return next(p for p in preferred_files("int8") if p in INT8_FILES)


def add_onnx_files(repo: Path, built: dict[str, Path], *, seed: int = 4321) -> dict[str, Path]:
    """Put the real fp32 and int8 files into ``repo`` (a hub repo folder) under the public
    names, and the other variants as decoys; returns ``{repo path: source}`` of the real ones.
    Files are replaced (unlink, then write), never written into: the repo's other files are
    hard links into an installed package."""
    picked = picked_int8_name()
    real = {"onnx/model.onnx": built["fp32"], picked: built[INT8_FILES[picked]]}
    rng = random.Random(seed)
    decoys = {p: 128 * 1024 for p in INT8_FILES if p != picked} | OTHER_DECOYS
    for path, src in real.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copyfile(src, target)
    for path, size in decoys.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.write_bytes(rng.randbytes(size))
    return real


def tiny_graph(path: Path, *, inputs: tuple[str, ...] = ("input_ids", "attention_mask"),
               output: str = "last_hidden_state", hidden: int = 8) -> Path:
    """A small real ONNX model: each input cast to float and summed, then broadcast to
    (batch, sequence, hidden) under the output name ``output``."""
    import onnx
    from onnx import TensorProto, helper

    nodes, graph_inputs = [], []
    for name in inputs:
        graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64,
                                                          ["batch", "sequence"]))
        nodes.append(helper.make_node("Cast", [name], [f"{name}_f"], to=TensorProto.FLOAT))
    total = f"{inputs[0]}_f"
    for i, name in enumerate(inputs[1:]):
        nodes.append(helper.make_node("Add", [total, f"{name}_f"], [f"sum{i}"]))
        total = f"sum{i}"
    nodes.append(helper.make_node("Unsqueeze", [total, "axis"], ["expanded"]))
    nodes.append(helper.make_node("Mul", ["expanded", "ones"], [output]))
    graph = helper.make_graph(
        nodes, "tiny", graph_inputs,
        [helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                       ["batch", "sequence", hidden])],
        initializer=[helper.make_tensor("axis", TensorProto.INT64, [1], [2]),
                     helper.make_tensor("ones", TensorProto.FLOAT, [hidden], [1.0] * hidden)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
