"""The ``onnx:`` backend on other sentence-transformers configurations and on bad files: repos
built from the real all-MiniLM-L6-v2 and its real ONNX export with other pooling modes, a
default prompt left out of the pooling, a Dense module (each compared with
sentence-transformers loading the same folder), and served files onnxruntime cannot use."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.hub import minilm_source
from support.onnx_fixtures import tiny_graph
from support.runner import one_line_error

ORG = "embctl-test"
TEXTS = ["The refund policy allows returns within 30 days", "weather forecast",
         "short", "A longer sentence, so that the batch pads some texts more than others."]


def jsonl(texts: list[str]) -> str:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def minilm_copy(dest: Path, onnx: Path | bytes | None, *, weights: bool = True) -> Path:
    """The real model's files in ``dest`` (linked: replace a file, never write into one) and
    ``onnx/model.onnx`` (a real file, or bytes)."""
    source = minilm_source()
    for src in source.rglob("*"):
        if src.is_file() and (weights or src.name != "model.safetensors"):
            _link(src, dest / src.relative_to(source))
    if isinstance(onnx, Path):
        _link(onnx, dest / "onnx" / "model.onnx")
    elif onnx is not None:
        (dest / "onnx").mkdir(parents=True, exist_ok=True)
        (dest / "onnx" / "model.onnx").write_bytes(onnx)
    return dest


def write_json(path: Path, data: object) -> None:
    path.unlink(missing_ok=True)  # a link into the installed package: replace it
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def modules(*extra: tuple[str, str]) -> list[dict]:
    rows = [("", "sentence_transformers.models.Transformer"),
            ("1_Pooling", "sentence_transformers.models.Pooling"), *extra]
    return [{"idx": i, "name": str(i), "path": p, "type": t} for i, (p, t) in enumerate(rows)]


def build_variants(root: Path, fp32: Path) -> dict[str, Path]:
    """Hub repos ``embctl-test/minilm-*`` with other configurations, and their folders."""
    repos: dict[str, Path] = {}
    concat = minilm_copy(root / ORG / "minilm-cls-max", fp32)
    write_json(concat / "modules.json", modules())  # no Normalize: raw concatenation
    write_json(concat / "1_Pooling" / "config.json",
               {"embedding_dimension": 384, "pooling_mode": ["cls", "max"]})
    repos["minilm-cls-max"] = concat
    last = minilm_copy(root / ORG / "minilm-sqrt-last", fp32)
    write_json(last / "modules.json", modules())
    write_json(last / "1_Pooling" / "config.json",
               {"word_embedding_dimension": 384, "pooling_mode_mean_sqrt_len_tokens": True,
                "pooling_mode_lasttoken": True})
    repos["minilm-sqrt-last"] = last
    prompt = minilm_copy(root / ORG / "minilm-prompt", fp32)
    write_json(prompt / "1_Pooling" / "config.json",
               {"embedding_dimension": 384, "pooling_mode": "mean", "include_prompt": False})
    write_json(prompt / "config_sentence_transformers.json",
               {"prompts": {"query": "query: ", "document": "passage: "},
                "default_prompt_name": "query"})
    repos["minilm-prompt"] = prompt
    repos["minilm-dense"] = dense_repo(root / ORG / "minilm-dense", fp32)
    return repos


def dense_repo(dest: Path, fp32: Path) -> Path:
    """all-MiniLM-L6-v2 + weighted-mean pooling + a Dense module (384 -> 128, tanh) +
    Normalize, saved by sentence-transformers itself."""
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer

    with warnings.catch_warnings():  # sentence-transformers 6 moved them; 3-5 have them here
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers import models

    base = SentenceTransformer(str(minilm_source()), device="cpu")
    torch.manual_seed(0)
    pooling = models.Pooling(384, pooling_mode="weightedmean")
    dense = models.Dense(384, 128, activation_function=torch.nn.Tanh())
    model = SentenceTransformer(modules=[base[0], pooling, dense, models.Normalize()],
                                device="cpu")
    model.save(str(dest))
    _link(fp32, dest / "onnx" / "model.onnx")
    return dest


@pytest.fixture(scope="module")
def variants(hub_root: Path, onnx_built) -> dict[str, Path]:
    return build_variants(hub_root, onnx_built["fp32"])


@pytest.mark.parametrize("name", ["minilm-cls-max", "minilm-sqrt-last", "minilm-prompt",
                                  "minilm-dense"])
def test_configurations_match_sentence_transformers(embctl, variants, name):
    from sentence_transformers import SentenceTransformer

    proc = embctl("embed", f"onnx:{ORG}/{name}", input=jsonl(TEXTS))
    assert proc.returncode == 0, proc.stderr
    got = np.asarray([json.loads(x)["embedding"] for x in proc.stdout.splitlines()],
                     dtype=np.float32)
    reference = SentenceTransformer(str(variants[name]), device="cpu").encode(TEXTS)
    assert got.shape == reference.shape
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(
        reference, axis=1)
    assert cos.min() >= 0.9999, (name, cos)
    assert np.allclose(np.linalg.norm(got, axis=1), np.linalg.norm(reference, axis=1),
                       rtol=1e-3)  # the same scale, not only the same direction
    if name == "minilm-prompt":  # the prompt is in the namespace: its vectors are its own
        caches = [r for r in json.loads(embctl("ls", "--json").stdout) if r["kind"] == "vectors"]
        assert caches[0]["params"]["prompt"] == "query: "


def test_truncated_onnx_file_is_one_line_naming_it(embctl, hub_root, onnx_built):
    """The Hub serves a truncated file: its hash matches what is served, so the pull takes it;
    loading it fails with one line naming the file and `embctl verify`."""
    half = onnx_built["fp32"].read_bytes()[:1_000_000]
    minilm_copy(hub_root / ORG / "minilm-truncated", half, weights=False)
    proc = embctl("embed", f"onnx:{ORG}/minilm-truncated", input=jsonl(TEXTS[:1]))
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc)
    assert "onnx/model.onnx" in line and "embctl verify" in line, line


@pytest.mark.parametrize(("name", "kw", "found"), [
    ("minilm-image-inputs", {"inputs": ("input_ids", "pixel_values")}, "pixel_values"),
    ("minilm-logits", {"output": "logits"}, "outputs logits"),
])
def test_unexpected_graph_says_what_was_expected(embctl, hub_root, tmp_path, name, kw, found):
    graph = tiny_graph(tmp_path / "tiny.onnx", **kw)
    minilm_copy(hub_root / ORG / name, graph.read_bytes(), weights=False)
    proc = embctl("embed", f"onnx:{ORG}/{name}", input=jsonl(TEXTS[:1]))
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc)
    assert found in line and "expected inputs input_ids" in line and \
        "last_hidden_state" in line, line


def test_a_small_graph_with_the_expected_names_runs(embctl, hub_root, tmp_path):
    """The checks accept any graph with the expected inputs and output: the tiny graph's
    output is the sum of its inputs, broadcast, so its mean-pooled vector is known."""
    graph = tiny_graph(tmp_path / "tiny.onnx", hidden=384)
    minilm_copy(hub_root / ORG / "minilm-tiny", graph.read_bytes(), weights=False)
    proc = embctl("embed", f"onnx:{ORG}/minilm-tiny", "--lines", input="hello\n")
    assert proc.returncode == 0, proc.stderr
    vec = np.asarray(json.loads(proc.stdout)["embedding"])
    assert vec.shape == (384,) and np.allclose(vec, vec[0]) and vec[0] > 0
