"""The ``onnx:`` backend end to end (in-process; in a fresh interpreter where what it imports is
checked), against the test hub serving the real all-MiniLM-L6-v2 with real ONNX files
(tests/support/onnx_fixtures.py): pull selection per variant, vectors equal to
sentence-transformers', the int8 variant, the cache namespace, no torch on the path,
``ls``/``export``/``embctl.load``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.homes import damage
from support.hub import MINILM, MINILM_DECOYS, MINILM_NEEDED, minilm_source, resolve_gets
from support.onnx_fixtures import INT8_FILES, OTHER_DECOYS, picked_int8_name
from support.runner import heavy_imports, one_line_error
from support.servers import fresh

REF = "onnx:all-MiniLM-L6-v2"
#: What an onnx pull of all-MiniLM-L6-v2 fetches besides its ONNX file.
CONFIGS = MINILM_NEEDED - {"model.safetensors", "README.md"}
TEXTS = [
    "The refund policy allows returns within 30 days",
    "return guidelines",
    "weather forecast",
    "Ünïcödé and emoji 🙂 survive",
    "A somewhat longer sentence, so that the batch holds texts of different lengths.",
    "x",
]


def jsonl(texts: list[str]) -> str:
    return "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)


def vectors(stdout: str) -> np.ndarray:
    return np.asarray([json.loads(line)["embedding"] for line in stdout.splitlines()],
                      dtype=np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def corpus(n: int = 200) -> list[str]:
    """Varied sentences, deterministic: words of the model's own README, recombined."""
    words = (minilm_source() / "README.md").read_text().split()
    words = [w for w in words if w.isascii() and w.strip("#*`|-")] or ["word"]
    rng = np.random.default_rng(7)
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 60)))) for _ in range(n)]


# This module's hub serves all-MiniLM-L6-v2 with its real ONNX files (conftest.py's
# onnx_hub_*): ``hub``, ``embctl``, ``pulled`` and ``hub_root`` here are that hub's.


@pytest.fixture
def hub(onnx_hub_server):
    yield from fresh(onnx_hub_server)


@pytest.fixture
def pulled_home(onnx_pulled_home) -> Path:
    return onnx_pulled_home


@pytest.fixture
def hub_root(onnx_hub_root) -> Path:
    return onnx_hub_root


@pytest.fixture(scope="module")
def st_reference():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_source()), device="cpu")
    return lambda texts: model.encode(texts, convert_to_numpy=True, batch_size=64)


def test_pull_fetches_configs_and_model_onnx_only(embctl, hub):
    proc = embctl("pull", REF)
    assert proc.returncode == 0, proc.stderr
    assert "(variant=fp32)" in proc.stderr
    sent = set(resolve_gets(hub))
    assert sent == CONFIGS | {"onnx/model.onnx"}
    assert not sent & (set(MINILM_DECOYS) - {"onnx/model.onnx"} | set(INT8_FILES)
                       | set(OTHER_DECOYS))
    ls = embctl("ls")
    assert ls.returncode == 0, ls.stderr
    row = next(line for line in ls.stdout.splitlines() if line.startswith("onnx:"))
    assert row.split()[2] == "onnx[fp32]" and row.split()[-1] == "ok", ls.stdout
    listed = [r for r in json.loads(embctl("ls", "--json").stdout) if r["backend"] == "onnx"]
    assert listed[0]["pull_options"] == [{"variant": "fp32"}]


def test_pull_int8_fetches_only_the_file_for_this_cpu(embctl, hub):
    proc = embctl("pull", REF, "--variant", "int8")
    assert proc.returncode == 0, proc.stderr
    assert set(resolve_gets(hub)) == CONFIGS | {picked_int8_name()}
    row = next(line for line in embctl("ls").stdout.splitlines() if line.startswith("onnx:"))
    assert row.split()[2] == "onnx[int8]"
    # -O is the same option; a second pull moves nothing; both variants are then listed.
    hub.reset_stats()
    again = embctl("pull", REF, "-O", "variant=int8")
    assert again.returncode == 0 and "up to date" in again.stderr
    assert not resolve_gets(hub)
    assert embctl("pull", REF, "-q").returncode == 0
    assert set(resolve_gets(hub)) == {"onnx/model.onnx"}
    row = next(line for line in embctl("ls").stdout.splitlines() if line.startswith("onnx:"))
    assert row.split()[2] == "onnx[fp32,int8]"
    verify = embctl("verify", REF)
    assert verify.returncode == 0, verify.stderr


def test_pull_options_are_checked(embctl, hub):
    bad = embctl("pull", REF, "--variant", "int4")
    assert bad.returncode == 2 and "fp32, int8" in one_line_error(bad)
    other = embctl("pull", REF, "-O", "normalize=true")
    assert other.returncode == 2 and "not a pull option" in one_line_error(other)
    st = embctl("pull", "all-MiniLM-L6-v2", "--variant", "int8")
    assert st.returncode == 2 and "takes no pull options" in one_line_error(st)
    assert not resolve_gets(hub)


def test_offline_pull_needs_that_variant_cached(embctl, hub):
    assert embctl("pull", REF, "-q").returncode == 0
    offline = {"HF_HUB_OFFLINE": "1"}
    ok = embctl("pull", REF, env=offline)
    assert ok.returncode == 0 and "up to date" in ok.stderr, ok.stderr
    missing = embctl("pull", REF, "--variant", "int8", env=offline)
    assert missing.returncode == 1, missing.stderr
    assert "did you mean" not in one_line_error(missing)


def test_embed_equals_sentence_transformers_and_never_mixes_with_st(pulled, st_reference):
    texts = TEXTS + corpus(40)
    st = pulled("embed", "all-MiniLM-L6-v2", input=jsonl(texts))
    assert st.returncode == 0, st.stderr
    proc = pulled("embed", REF, input=jsonl(texts))  # pulls the onnx files it lacks
    assert proc.returncode == 0, proc.stderr
    # Nothing came from st's cache: every unique text was computed by onnx.
    assert f"{len(set(texts))} computed" in proc.stderr, proc.stderr
    got, ref = vectors(proc.stdout), st_reference(texts)
    assert got.shape == ref.shape == (len(texts), 384)
    cos = cosines(got, ref)
    assert cos.min() >= 0.9999, cos.min()
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)  # the Normalize module
    again = pulled("embed", REF, input=jsonl(texts))
    assert "0 computed" in again.stderr or "computed" not in again.stderr, again.stderr
    assert np.array_equal(vectors(again.stdout), got)
    rows = [r for r in json.loads(pulled("ls", "--json").stdout) if r["kind"] == "vectors"]
    assert sorted(r["backend"] for r in rows) == ["onnx", "st"]
    onnx_row = next(r for r in rows if r["backend"] == "onnx")
    assert onnx_row["params"]["variant"] == "fp32"
    blob = (pulled.repo_dir / "snapshots").glob("*/onnx/model.onnx")
    assert onnx_row["params"]["onnx_sha256"] == next(blob).resolve().name
    table = pulled("ls").stdout
    assert any(line.split()[:3] == [REF, "vectors", "onnx[fp32]"] for line in
               table.splitlines()), table
    # The record of the revision holds both pulls' files: verify covers st's and onnx's.
    verify = pulled("verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    snapshot = next((pulled.repo_dir / "snapshots").iterdir())
    assert (snapshot / "model.safetensors").exists() and (snapshot / "onnx/model.onnx").exists()


def test_a_changed_onnx_blob_is_refused_before_any_vector(pulled):
    assert pulled("embed", REF, input=jsonl(TEXTS[:1])).returncode == 0
    blob = next((pulled.repo_dir / "snapshots").glob("*/onnx/model.onnx")).resolve()
    assert blob.stat().st_nlink == 1  # the test's private copy

    def rot(data: bytearray) -> None:  # bit rot in the middle of the weights: still loadable
        middle = len(data) // 2
        data[middle:middle + 4096] = b"\x7f" * 4096

    damage(blob, rot)
    proc = pulled("embed", REF, input=jsonl(TEXTS[1:3]))
    assert proc.returncode == 1 and proc.stdout == ""
    err = one_line_error(proc)
    assert "onnx/model.onnx" in err and "--repair" in err, err


def test_int8_is_close_to_fp32_and_cached_apart(pulled, capsys):
    texts = corpus(200)
    fp32 = pulled("embed", REF, input=jsonl(texts))
    int8 = pulled("embed", REF, "--variant", "int8", input=jsonl(texts))
    assert fp32.returncode == 0 and int8.returncode == 0, fp32.stderr + int8.stderr
    assert f"{len(set(texts))} computed" in int8.stderr  # no hit on fp32's cache
    cos = cosines(vectors(int8.stdout), vectors(fp32.stdout))
    with capsys.disabled():
        print(f"\nint8 ({picked_int8_name()}) vs fp32 on {len(texts)} texts: mean cosine "
              f"{cos.mean():.4f}, min {cos.min():.4f}")
    assert cos.mean() >= 0.95
    caches = [r for r in json.loads(pulled("ls", "--json").stdout) if r["kind"] == "vectors"]
    assert sorted(r["params"]["variant"] for r in caches) == ["fp32", "int8"]
    assert len({r["namespace"] for r in caches}) == 2


@pytest.mark.e2e  # what a fresh interpreter imports
def test_onnx_path_imports_no_torch(pulled, tmp_path):
    assert pulled("pull", REF, "-q").returncode == 0
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl(TEXTS[:2]))
    heavy, stderr = heavy_imports(pulled.env, "embed", REF, "--no-cache", "-i", str(source),
                                  "-o", str(tmp_path / "out.jsonl"),
                                  heavy=("torch", "transformers", "sentence_transformers",
                                         "onnxruntime"))
    assert "onnxruntime" in heavy, stderr  # it did run the model
    assert not {"torch", "transformers", "sentence_transformers"} & set(heavy), heavy
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


@pytest.mark.e2e  # a fresh interpreter in which onnxruntime (or tokenizers) cannot be imported
@pytest.mark.parametrize("missing", ["onnxruntime", "tokenizers"])
def test_a_missing_runtime_library_is_one_line(pulled, tmp_path, missing):
    """A half-installed image (the extra left out): one line naming what to install, not the
    traceback of the first batch."""
    assert pulled("pull", REF, "-q").returncode == 0
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / f"{missing}.py").write_text(f"raise ImportError({f'No module named {missing}'!r})\n")
    paths = [str(shadow), pulled.env.get("PYTHONPATH", "")]
    proc = pulled.process("embed", REF, "--no-cache", input=jsonl(TEXTS[:1]),
                          env={"PYTHONPATH": os.pathsep.join(p for p in paths if p)})
    assert proc.returncode == 1 and proc.stdout == ""
    line = one_line_error(proc)
    assert f"cannot import {missing}" in line and "pip install 'embctl[onnx]'" in line, line


def test_cuda_without_onnxruntime_gpu_is_one_line(pulled):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    proc = pulled("embed", REF, "--device", "cuda", input=jsonl(TEXTS[:1]))
    assert proc.returncode == 1 and proc.stdout == ""
    assert "onnxruntime-gpu" in one_line_error(proc)
    other = pulled("embed", REF, "--device", "mps", input=jsonl(TEXTS[:1]))
    assert other.returncode == 2 and "cpu, cuda or cuda:N" in one_line_error(other)


@pytest.mark.e2e  # what a fresh interpreter imports
def test_python_api_load_with_variant(pulled):
    script = (
        "import sys, json, embctl\n"
        f"m = embctl.load({REF!r}, variant='int8')\n"
        "v = m.embed(['hello world', 'refunds'])\n"
        "print(json.dumps({'shape': v.shape, 'ns': m.namespace,\n"
        "  'heavy': [x for x in ('torch', 'transformers') if x in sys.modules]}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=pulled.env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["shape"] == [2, 384] and data["heavy"] == []
    assert data["ns"]["variant"] == "int8" and data["ns"]["backend"] == "onnx"
    snapshot = next((pulled.repo_dir / "snapshots").iterdir())
    assert (snapshot / picked_int8_name()).exists()
    assert not (snapshot / "onnx" / "model.onnx").exists()  # load pulled only the int8 file


def test_export_includes_the_variant_file(pulled, tmp_path):
    missing = pulled("export", REF, "--variant", "int8", "--to", str(tmp_path / "none"))
    assert missing.returncode == 1 and "--variant int8" in one_line_error(missing)
    assert pulled("pull", REF, "--variant", "int8", "-q").returncode == 0
    out = tmp_path / "minilm-int8"
    proc = pulled("export", REF, "--variant", "int8", "--to", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)["files"]
    assert picked_int8_name() in files and "tokenizer.json" in files
    assert (out / picked_int8_name()).read_bytes()[:64] == \
        next((pulled.repo_dir / "snapshots").glob(f"*/{picked_int8_name()}")).read_bytes()[:64]
    bad = pulled("export", "all-MiniLM-L6-v2", "--variant", "int8", "--to", str(tmp_path / "x"))
    assert bad.returncode == 2 and "no pull options" in one_line_error(bad)


def test_long_input_is_truncated_with_one_warning(pulled, st_reference):
    long = " ".join(["refund policy and return guidelines"] * 200)
    proc = pulled("embed", REF, input=jsonl([long, "short", long + " again"]))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "max_seq_length" in line]
    assert len(warnings) == 1 and "2 inputs" in warnings[0] and "256 tokens" in warnings[0]
    got = vectors(proc.stdout)
    assert cosines(got, st_reference([long, "short", long + " again"])).min() >= 0.9999


def test_variant_fallback_order():
    from embctl_onnx.variants import AVX2, AVX512, VNNI, pick

    only_avx2 = ["onnx/model.onnx", AVX2]
    assert pick(only_avx2, "int8", "vnni") == AVX2
    every = ["onnx/model.onnx", *INT8_FILES]
    assert pick(every, "int8", "vnni") == VNNI
    assert pick(every, "int8", "avx512") == AVX512
    assert pick(every, "int8", "avx2") == AVX2
    assert pick(every, "int8", "arm") == "onnx/model_qint8_arm64.onnx"
    assert pick(["onnx/model.onnx", "onnx/model_quantized.onnx"], "int8", "avx2") == \
        "onnx/model_quantized.onnx"
    assert pick(["model.safetensors"], "int8") is None
    assert pick(every, "fp32") == "onnx/model.onnx"


def test_select_files_for_a_repo_without_onnx_takes_torch_weights():
    from embctl_onnx.files import select_files

    paths = sorted(MINILM_NEEDED | {"pytorch_model.bin", "openvino/openvino_model.bin"})
    chosen = select_files(paths, {"variant": "fp32"})
    assert "model.safetensors" in chosen and "pytorch_model.bin" not in chosen
    assert not [p for p in chosen if p.startswith("openvino/") or p == "README.md"]


def snapshot_of(embctl) -> Path:
    return next((embctl.repo_dir / "snapshots").iterdir())


def served_minilm(hub_root: Path) -> Path:
    return hub_root / MINILM


@pytest.mark.e2e  # what a fresh interpreter imports
def test_dry_run_counts_exact_tokens_without_loading_the_model(pulled, tmp_path):
    from tokenizers import Tokenizer

    assert pulled("pull", REF, "-q").returncode == 0
    texts = TEXTS + [" ".join(["refund"] * 400)]  # one over max_seq_length: 256 counted
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl(texts))
    tok = Tokenizer.from_file(str(minilm_source() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    expected = sum(len(tok.encode(t).ids) for t in texts)
    assert expected > 400 + len(TEXTS) * 2
    heavy, stderr = heavy_imports(pulled.env, "embed", REF, "--dry-run", "-i", str(source),
                                  heavy=("torch", "onnxruntime"))
    assert heavy == [], heavy
    assert f"{expected:,} tokens" in stderr, stderr
    assert "1 input may exceed the model's 256-token limit" in stderr, stderr


class _Counting:
    """The model's real tokenizer, counting the texts it encodes."""

    def __init__(self, tok) -> None:
        self.tok, self.texts = tok, 0

    def encode_batch(self, texts):
        self.texts += len(texts)
        return self.tok.encode_batch(texts)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_calls_are_sorted_and_cut_by_tokens_from_one_tokenization(pulled, st_reference):
    """Each text is tokenized once: the counts that sort and cut the window come from the
    encodings its calls then compute; every call stays under the padded budget."""
    from support.inprocess import environment

    import embctl

    texts = TEXTS + corpus(40) + ["refund " * 300]  # one truncated at 256 tokens
    with environment(pulled.env):
        model = embctl.load(REF, cache=False)
        embedder = model._embedder
        counting = _Counting(embedder.tokenizer(pad=False))
        embedder._tokenizers[True, False] = counting
        job = model._vectorizer.plan(texts)
        assert counting.texts == len(set(texts))
        counts = [[len(embedder.encoded[t][0]) for t in (job.misses[k] for k in batch)]
                  for batch in job.batches]
        flat = [n for batch in counts for n in batch]
        assert flat == sorted(flat, reverse=True) and flat[0] == 256
        assert all(len(b) * b[0] <= embedder.padded_budget or len(b) == 1 for b in counts)
        embedder.encoded.clear()
        counting.texts = 0
        got = model.embed(texts)
        assert counting.texts == len(set(texts))  # planned, then computed: never again
        assert not embedder.encoded
    assert cosines(got, st_reference(texts)).min() >= 0.9999
