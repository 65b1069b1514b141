"""`embctl export`: a model to a plain directory and back on an offline machine; vectors out."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from support.runner import Embctl, one_line_error

MODEL = "all-MiniLM-L6-v2"
ROWS = "".join(json.dumps({"id": i, "text": t}) + "\n"
               for i, t in enumerate(["return guidelines", "weather forecast", "refunds"]))


@pytest.mark.e2e  # a journey: sentence-transformers loads the export in a fresh offline process
def test_model_round_trip_to_an_offline_machine(pulled, tmp_path, hub):
    out = tmp_path / "usb" / "minilm"
    proc = pulled("export", MODEL, "--to", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["revision"] and "model.safetensors" in summary["files"]
    links = [p for p in out.rglob("*") if p.is_symlink()]
    assert links == [] and (out / "model.safetensors").stat().st_size > 80_000_000
    assert (out / ".embctl-export.json").is_file()
    again = pulled("export", MODEL, "--to", str(out))
    assert again.returncode == 1 and "not empty" in one_line_error(again)

    # sentence-transformers loads the plain directory with no network.
    offline = {**pulled.env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    script = ("import sys; from sentence_transformers import SentenceTransformer\n"
              f"m = SentenceTransformer({str(out)!r}, device='cpu')\n"
              "print(m.encode(['weather forecast']).shape)")
    st = subprocess.run([sys.executable, "-c", script], env=offline, capture_output=True,
                        text=True, timeout=300)
    assert st.returncode == 0 and "(1, 384)" in st.stdout, st.stderr

    # Another machine: empty caches, offline, imports the directory, then embeds.
    other_home = tmp_path / "other"
    other = Embctl.at(other_home, HF_HUB_OFFLINE="1")
    imported = other("pull", MODEL, "--from", str(out))
    assert imported.returncode == 0, imported.stderr
    theirs = other("embed", MODEL, input=ROWS)
    ours = pulled("embed", MODEL, input=ROWS)
    assert theirs.returncode == 0 and ours.returncode == 0, theirs.stderr + ours.stderr
    a = np.array([json.loads(x)["embedding"] for x in theirs.stdout.splitlines()])
    b = np.array([json.loads(x)["embedding"] for x in ours.stdout.splitlines()])
    assert np.abs(a - b).max() < 1e-6


def test_export_uncached_model_is_a_clear_error(embctl, tmp_path):
    proc = embctl("export", MODEL, "--to", str(tmp_path / "x"))
    assert proc.returncode == 1 and "embctl pull" in one_line_error(proc)
    proc = embctl("export", MODEL)
    assert proc.returncode == 2


def read_export(out, fmt: str, tmp_path):
    """(vectors, keys, texts) from an exported file in any format."""
    if fmt == "npy":
        got = np.load(out)
        keys = (tmp_path / "vectors.keys.txt").read_text().split()
        texts = [json.loads(x)["text"] for x in (tmp_path / "vectors.texts.jsonl").open()]
    elif fmt == "safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(out))
        got, keys = tensors["embeddings"], [k.tobytes().hex() for k in tensors["keys"]]
        texts = [json.loads(x)["text"] for x in (tmp_path / "vectors.texts.jsonl").open()]
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
        keys, texts = table.column("key").to_pylist(), table.column("text").to_pylist()
    else:
        rows = [json.loads(x) for x in out.open()]
        got = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
        keys, texts = [r["key"] for r in rows], [r["text"] for r in rows]
    return got, keys, texts


def test_vectors_export_formats(pulled, tmp_path):
    direct = pulled("embed", MODEL, "--store-text", "-o", str(tmp_path / "direct.npy"),
                    input=ROWS)
    assert direct.returncode == 0, direct.stderr
    expected = np.load(tmp_path / "direct.npy")
    formats = ["npy", "safetensors", "jsonl"]
    try:
        import pyarrow  # noqa: F401

        formats.append("parquet")
    except ImportError:
        pass
    for fmt in formats:
        out = tmp_path / f"vectors.{fmt}"
        proc = pulled("export", MODEL, "--vectors", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        got, keys, texts = read_export(out, fmt, tmp_path)
        assert got.shape == (3, 384) and len(keys) == 3 and len(set(keys)) == 3, fmt
        order = [["return guidelines", "weather forecast", "refunds"].index(t) for t in texts]
        assert np.abs(got - expected[order]).max() < 1e-6, fmt
    # A second namespace (another prefix) makes the choice explicit.
    assert pulled("embed", MODEL, "--prefix", "q: ", input=ROWS).returncode == 0
    proc = pulled("export", MODEL, "--vectors", "-o", str(tmp_path / "x.npy"))
    assert proc.returncode == 2 and "--namespace" in one_line_error(proc)
