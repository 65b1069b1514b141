"""Issue #22, case 7: a repair drops only what may be wrong and rebuilds what it can; and two
things found beside it in the onnx backend (a bad ``EMBCTL_ONNX_CPU``, a repo without
``tokenizer.json``).

The model is the real all-MiniLM-L6-v2 of ``pulled``; its files are damaged for real in this
test's home only (``support.homes.damage``).  The ONNX export beside it is embctl's own
layout (``EMBCTL_HOME/onnx-exports``) holding the real fp32 graph of ``onnx_built`` (built once
and cached, hard-linked here: the product deletes an export, never writes into one), so only
the repair under test runs torch's exporter.  Everything runs in-process but the torch-less
repair, which needs an interpreter where torch cannot be imported (``e2e``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from support.homes import damage
from support.hub import resolve_gets
from support.hub.repos import MINILM, _link_or_copy, minilm_source
from support.runner import Embctl, one_line_error

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["The refund policy allows returns within 30 days", "return guidelines",
         "weather forecast", "a fourth sentence, about nothing"]
MORE = ["a sentence embedded after the damage"]
INSTALL = 'pip install torch==2.13.0 "embctl[onnx-export]"'


def lines(texts: list[str]) -> str:
    return "".join(t + "\n" for t in texts)


def embed(run: Embctl, texts: list[str]):
    return run("embed", MODEL, "--lines", input=lines(texts))


def snapshot(run: Embctl) -> Path:
    (snap,) = (run.repo_dir / "snapshots").iterdir()
    return snap


def cached_rows(run: Embctl) -> int:
    (path,) = sorted((run.home / "embctl" / "vectors").glob("*.sqlite"))
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM vectors").fetchone()[0]
    finally:
        conn.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plant_export(run: Embctl, built: dict[str, Path]) -> Path:
    """The fp32 export of the pulled revision, as ``embctl pull onnx:`` leaves one: the real
    graph (hard-linked from ``onnx_built``) and a manifest with its sha256 and size."""
    from embctl_onnx.exports.layout import Manifest, bucket_dir, describe_files, write_manifest
    from support.inprocess import environment

    commit = snapshot(run).name
    with environment(run.env):
        bucket = bucket_dir(MINILM, commit, "fp32")
    bucket.mkdir(parents=True)
    os.link(built["fp32"], bucket / "model.onnx")
    made = {"inputs": ["input_ids", "attention_mask", "token_type_ids"],
            "output": "last_hidden_state", "opset": 17, "architecture": "BertModel"}
    write_manifest(bucket, Manifest(MINILM, commit, "fp32", describe_files(bucket), made,
                                    time.time() - 3600))
    return bucket


def export_rows(run: Embctl, **env: str) -> list[dict]:
    listing = run("ls", "--json", env=env or None)
    assert listing.returncode == 0, listing.stderr
    return [r for r in json.loads(listing.stdout) if r["kind"] == "onnx-export"]


# -- case 7: a repair drops only what may be wrong ------------------------------------------


def test_repairing_a_config_keeps_the_vectors_and_exports_again_what_came_from_it(
        pulled, onnx_built):
    bucket = plant_export(pulled, onnx_built)
    first = embed(pulled, TEXTS)
    assert first.returncode == 0, first.stderr
    rows = cached_rows(pulled)
    assert rows == len(TEXTS)
    config = snapshot(pulled) / "config.json"
    good = config.read_bytes()
    damage(config)

    # What the rule leans on: nothing is computed from bytes that fail their hash.
    refused = embed(pulled, MORE)
    assert refused.returncode == 1
    assert "config.json does not match its hash" in one_line_error(refused)

    proc = pulled("verify", MODEL, "--repair", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert [(p["path"], p["problem"], p["repaired"]) for p in report["problems"]] == \
        [("config.json", "hash_mismatch", True)]
    assert report["dropped_vectors"] == [] and report["dropped"] == []
    assert [(r["path"], r["variant"], r["repaired"]) for r in report["rebuilt"]] == \
        [(str(bucket), "fp32", True)]
    assert "config.json" in report["rebuilt"][0]["problems"][0]

    assert config.read_bytes() == good  # the damaged file is back
    assert cached_rows(pulled) == rows  # the vectors are kept ...
    again = embed(pulled, TEXTS)  # ... and served: nothing is computed again
    assert again.returncode == 0, again.stderr
    assert f"{len(TEXTS)} cache hits, 0 computed" in again.stderr
    assert again.stdout == first.stdout

    # The export was made again from the repaired snapshot: a new graph, with its manifest.
    manifest = json.loads((bucket / "manifest.json").read_text())
    assert manifest["created"] > time.time() - 600
    assert (bucket / "model.onnx").stat().st_ino != onnx_built["fp32"].stat().st_ino
    assert sha256(bucket / "model.onnx") == manifest["files"]["model.onnx"]["sha256"]
    assert [r["status"] for r in export_rows(pulled)] == ["ok"]
    assert pulled("verify", "-q").returncode == 0


def test_an_export_made_from_none_of_the_repaired_files_is_kept_as_it_is(pulled, onnx_built):
    bucket = plant_export(pulled, onnx_built)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in bucket.iterdir()}
    assert embed(pulled, TEXTS).returncode == 0
    tokenizer = snapshot(pulled) / "tokenizer.json"
    good = tokenizer.read_bytes()
    damage(tokenizer, lambda data: data.__setitem__(slice(10, 20), b"#" * 10))

    proc = pulled("verify", "--repair")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tokenizer.json: hash mismatch" in proc.stdout and "[repaired]" in proc.stdout
    assert "dropped" not in proc.stdout and "export" not in proc.stdout, proc.stdout
    assert tokenizer.read_bytes() == good
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in bucket.iterdir()} == before
    assert cached_rows(pulled) == len(TEXTS)
    again = embed(pulled, TEXTS)
    assert again.returncode == 0 and f"{len(TEXTS)} cache hits, 0 computed" in again.stderr


@pytest.mark.e2e  # torch absent: an interpreter where it cannot be imported
def test_without_torch_an_export_made_from_a_repaired_file_is_marked_stale(pulled, onnx_built,
                                                                           tmp_path):
    bucket = plant_export(pulled, onnx_built)
    assert embed(pulled, TEXTS).returncode == 0
    config = snapshot(pulled) / "config.json"
    good = config.read_bytes()
    damage(config)
    blocked = tmp_path / "notorch" / "torch"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ImportError(\"No module named 'torch'\", name='torch')\n")
    path = os.pathsep.join(p for p in (str(blocked.parent), pulled.env.get("PYTHONPATH"))
                           if p)

    proc = pulled.process("verify", MODEL, "--repair", env={"PYTHONPATH": path})
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the export is left stale
    assert "Traceback" not in proc.stderr
    assert "config.json: hash mismatch" in proc.stdout and "[repaired]" in proc.stdout
    stale = [line for line in proc.stdout.splitlines() if "marked stale" in line]
    assert len(stale) == 1 and str(bucket) in stale[0], proc.stdout
    assert INSTALL in stale[0] and f"embctl verify onnx:{MINILM} --repair" in stale[0]
    assert "dropped" not in proc.stdout
    assert config.read_bytes() == good
    assert cached_rows(pulled) == len(TEXTS)
    assert (bucket / "model.onnx").stat().st_ino == onnx_built["fp32"].stat().st_ino  # kept
    (row,) = export_rows(pulled)
    assert row["status"] == "stale" and row["path"] == str(bucket)

    # With torch, the next repair exports it again.
    fixed = pulled("verify", "--repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "exported again" in fixed.stdout and "dropped" not in fixed.stdout
    assert [r["status"] for r in export_rows(pulled)] == ["ok"]
    assert cached_rows(pulled) == len(TEXTS)
    assert (bucket / "model.onnx").stat().st_ino != onnx_built["fp32"].stat().st_ino
    assert pulled("verify", "-q").returncode == 0


# -- found beside it: the onnx backend's inputs ---------------------------------------------


def test_a_bad_onnx_cpu_is_a_usage_error_listing_the_values(embctl, hub):
    for args in (("pull", f"onnx:{MODEL}"), ("pull", f"onnx:{MODEL}", "--variant", "int8"),
                 ("embed", f"onnx:{MODEL}", "--lines")):
        proc = embctl(*args, env={"EMBCTL_ONNX_CPU": "bogus"}, input="hello\n")
        assert proc.returncode == 2, (args, proc.stderr)
        line = one_line_error(proc)
        assert "EMBCTL_ONNX_CPU" in line and "'bogus'" in line, line
        assert "vnni, avx512, avx2, arm, x86" in line, line
    assert not resolve_gets(hub) and not list(embctl.cache.glob("*/snapshots/*/*"))
    ok = embctl("pull", f"onnx:{MODEL}", "-q", env={"EMBCTL_ONNX_CPU": " AVX2 "})
    assert ok.returncode == 0, ok.stderr  # a value it takes, as people type it


NOTOK = "embctl-test/minilm-notokenizer"


def test_pull_onnx_of_a_repo_without_tokenizer_json_fails_at_pull(embctl, hub, hub_root,
                                                                  onnx_built):
    """The real model's files but tokenizer.json, and a real ONNX graph: hard links."""
    source = minilm_source()
    repo = hub_root / NOTOK
    for src in source.rglob("*"):
        if src.is_file() and src.name not in ("tokenizer.json", "model.safetensors") \
                and "__pycache__" not in src.parts:
            _link_or_copy(src, repo / src.relative_to(source))
    _link_or_copy(onnx_built["fp32"], repo / "onnx" / "model.onnx")
    assert not (repo / "tokenizer.json").exists()

    proc = embctl("pull", f"onnx:{NOTOK}")
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc)
    assert "tokenizer.json" in line and "nothing was pulled" in line, line
    assert not resolve_gets(hub, NOTOK)  # refused before any download
    folder = embctl.cache / f"models--{NOTOK.replace('/', '--')}"
    assert not list(folder.glob("snapshots/*/*")) and not list(folder.glob("refs/*"))
    listing = embctl("ls", "--json")
    assert listing.returncode == 0, listing.stderr
    assert not [r for r in json.loads(listing.stdout) if r.get("repo_id") == NOTOK
                and r["status"] == "ok"]


def test_repairing_a_damaged_export_drops_only_the_vectors_it_made(pulled, onnx_built):
    """The export feeds the onnx backend alone: its repair drops the onnx vectors of the
    revision (computed from bytes no check covered) and keeps st's."""
    bucket = plant_export(pulled, onnx_built)
    assert embed(pulled, TEXTS).returncode == 0
    onnx = pulled("embed", f"onnx:{MODEL}", "--lines", input=lines(TEXTS))
    assert onnx.returncode == 0, onnx.stderr
    damage(bucket / "model.onnx", lambda data: data.__setitem__(slice(-64, None), b"\0" * 64))

    proc = pulled("verify", "--repair", "--json")
    report = json.loads(proc.stdout)
    assert [d["count"] for d in report["dropped_vectors"]] == [len(TEXTS)], report
    again = embed(pulled, TEXTS)
    assert again.returncode == 0 and f"{len(TEXTS)} cache hits, 0 computed" in again.stderr
    onnx = pulled("embed", f"onnx:{MODEL}", "--lines", input=lines(TEXTS))
    assert onnx.returncode == 0 and f"0 cache hits, {len(TEXTS)} computed" in onnx.stderr
