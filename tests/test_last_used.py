"""What counts as a use of a model (docs/cache.md, "What counts as use"): one test per row.

A model's "last used" is the later of embctl's record of its uses and its blobs' newest atime.
Commands that only look at the cache (ls, du, verify, a pull of a complete model) must leave
it as it was, or `rm --max-size` removes the wrong model.  The blobs are given an atime long
in the past with os.utime: on this file system's `relatime` (and on `strictatime`) a read then
moves it for real; the tests assert on what embctl computes (`ls --json`'s `last_used`, the
plan of `rm --max-size`).  Small models made with make_repo (a few KB each, a private copy
per test); all-MiniLM-L6-v2 only where embedding is the subject.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from support.homes import damage
from support.hub import make_repo

LONG_AGO = int(time.time()) - 400 * 86400  # "used" a year ago
LATELY = int(time.time()) - 3 * 86400  # used three days ago: still well after LONG_AGO


def pull_tiny(run, hub_root: Path, *names: str) -> None:
    """Pull one small st model per name (repo ``lastused/<name>``): an LFS-named weights
    blob (sha256) and small files (git sha1), so both hashes are read."""
    for i, name in enumerate(names):
        make_repo(hub_root, f"lastused/{name}", {"config.json": '{"hidden_size": 8}',
                                                  "modules.json": "[]",
                                                  "model.safetensors": bytes([i + 1]) * 40_000})
        proc = run("pull", f"lastused/{name}", "-q")
        assert proc.returncode == 0, proc.stderr


def blobs(run, name: str) -> list[Path]:
    return sorted((run.cache / f"models--lastused--{name}" / "blobs").iterdir())


def age(run, name: str, when: int) -> None:
    """The model was last read at ``when`` (and written before): as an old cache is."""
    for blob in blobs(run, name):
        os.utime(blob, (when, when))


def last_used(run, name: str) -> float:
    proc = run("ls", "--json")
    assert proc.returncode == 0, proc.stderr
    row, = (r for r in json.loads(proc.stdout) if r["repo_id"] == f"lastused/{name}")
    return row["last_used"]


def max_size_picks(run, limit_below: int) -> list[str]:
    """The models `rm --max-size` would remove to free ``limit_below`` bytes (a dry run)."""
    du = json.loads(run("du", "--json").stdout)
    proc = run("rm", "--max-size", str(du["total"] - du["other"] - limit_below),
               "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    return [r["repo_id"] for r in json.loads(proc.stdout)["removed"]]


#: Every command of the table's "no" rows, as a user types it (``{ref}``: the model).
READ_ONLY = {
    "ls": ["ls"],
    "ls --json": ["ls", "--json"],
    "du": ["du"],
    "verify": ["verify"],
    "verify REF": ["verify", "{ref}"],
    "verify --repair (nothing to repair)": ["verify", "--repair"],
    "verify REF --repair (nothing to repair)": ["verify", "{ref}", "--repair"],
    "pull REF (complete)": ["pull", "{ref}", "-q"],
}


def test_read_only_commands_leave_rm_max_size_removing_the_least_recently_used(
        embctl, hub_root):
    pull_tiny(embctl, hub_root, "a", "b")
    age(embctl, "a", LONG_AGO)  # A: used a year ago, B: three days ago
    age(embctl, "b", LATELY)
    assert max_size_picks(embctl, 1000) == ["lastused/a"]
    # B checked, then A: were reads uses, A would now look the more recently used (relatime
    # moves an atime once a day, so the first reads decide), and rm would remove B.
    for name, args in [("verify REF", ["verify", "{ref}"]), *READ_ONLY.items()]:
        for ref in ("lastused/b", "lastused/a"):
            proc = embctl(*(a.format(ref=ref) for a in args))
            assert proc.returncode == 0, (name, proc.stderr)
    proc = embctl("pull", "lastused/a", "-q", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert max_size_picks(embctl, 1000) == ["lastused/a"]
    assert (last_used(embctl, "a"), last_used(embctl, "b")) == (LONG_AGO, LATELY)


@pytest.mark.parametrize("args", [*READ_ONLY.values(), ["pull", "{ref}", "-q", "--offline"]],
                         ids=[*READ_ONLY, "pull REF (complete, HF_HUB_OFFLINE=1)"])
def test_a_read_only_command_is_no_use(embctl, hub_root, args):
    pull_tiny(embctl, hub_root, "ro")
    age(embctl, "ro", LONG_AGO)
    env = {}
    if "--offline" in args:
        args, env = [a for a in args if a != "--offline"], {"HF_HUB_OFFLINE": "1"}
    proc = embctl(*(a.format(ref="lastused/ro") for a in args), env=env)
    assert proc.returncode == 0, proc.stderr
    assert last_used(embctl, "ro") == LONG_AGO
    assert all(b.stat().st_atime == LONG_AGO for b in blobs(embctl, "ro"))


def test_without_o_noatime_verify_puts_the_atimes_back(embctl, hub_root, monkeypatch):
    """As on macOS (no O_NOATIME): the atime is restored after reading, the mtime kept."""
    pull_tiny(embctl, hub_root, "mac")
    age(embctl, "mac", LONG_AGO)
    mtimes = [b.stat().st_mtime_ns for b in blobs(embctl, "mac")]
    monkeypatch.delattr(os, "O_NOATIME", raising=False)
    proc = embctl("verify")
    assert proc.returncode == 0, proc.stderr
    assert last_used(embctl, "mac") == LONG_AGO
    assert [b.stat().st_mtime_ns for b in blobs(embctl, "mac")] == mtimes


def test_export_is_a_use(embctl, hub_root, tmp_path):
    pull_tiny(embctl, hub_root, "exp")
    age(embctl, "exp", LONG_AGO)
    start = time.time()
    proc = embctl("export", "lastused/exp", "--to", str(tmp_path / "out"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert last_used(embctl, "exp") >= start - 1


def test_a_pull_that_downloads_makes_a_fresh_model(embctl, hub_root):
    start = time.time()
    pull_tiny(embctl, hub_root, "new")
    assert last_used(embctl, "new") >= start - 1


def test_a_repair_that_fetches_a_file_makes_the_model_fresh(embctl, hub_root):
    pull_tiny(embctl, hub_root, "fix")
    age(embctl, "fix", LONG_AGO)
    link = next((embctl.cache / "models--lastused--fix" / "snapshots").glob("*/config.json"))
    damage(link)
    os.utime(link.resolve(), (LONG_AGO, LONG_AGO))
    start = time.time()
    proc = embctl("verify", "lastused/fix", "--repair")
    assert proc.returncode == 0, proc.stderr
    assert "[repaired]" in proc.stdout + proc.stderr
    assert last_used(embctl, "fix") >= start - 1


def test_embed_is_a_use(pulled):
    """Loading the model to embed counts (embctl's own record: the atime need not move)."""
    rows = {r["repo_id"]: r["last_used"] for r in json.loads(pulled("ls", "--json").stdout)}
    before = rows["sentence-transformers/all-MiniLM-L6-v2"]
    start = time.time()
    proc = pulled("embed", "all-MiniLM-L6-v2", "--lines", "-q", input="one use\n")
    assert proc.returncode == 0, proc.stderr
    rows = {r["repo_id"]: r["last_used"] for r in json.loads(pulled("ls", "--json").stdout)}
    assert before <= start <= rows["sentence-transformers/all-MiniLM-L6-v2"]


def test_ls_and_verify_leave_a_matrix_as_last_used(pulled):
    proc = pulled("pull", "matrix:sentence-transformers/all-MiniLM-L6-v2", "-q")
    assert proc.returncode == 0, proc.stderr
    files = [p for p in (pulled.home / "embctl" / "matrices").iterdir() if p.is_file()]
    for f in files:
        os.utime(f, (LONG_AGO, LONG_AGO))
    for args in (["ls"], ["du"], ["verify"], ["verify", "--repair"]):
        proc = pulled(*args)
        assert proc.returncode == 0, (args, proc.stderr)
    row, = (r for r in json.loads(pulled("ls", "--json").stdout) if r["kind"] == "matrix")
    assert row["last_used"] == LONG_AGO


def plant_export(run, built: dict[str, Path]) -> Path:
    """The fp32 ONNX export of the pulled revision, as `pull onnx:` leaves one: the real graph
    (hard-linked from ``onnx_built``) and its manifest (as in tests/test_repair_scope.py)."""
    from embctl_onnx.exports.layout import Manifest, bucket_dir, describe_files, write_manifest
    from support.inprocess import environment

    commit = next((run.repo_dir / "snapshots").iterdir()).name
    with environment(run.env):
        bucket = bucket_dir("sentence-transformers/all-MiniLM-L6-v2", commit, "fp32")
    bucket.mkdir(parents=True)
    os.link(built["fp32"], bucket / "model.onnx")
    made = {"inputs": ["input_ids", "attention_mask", "token_type_ids"],
            "output": "last_hidden_state", "opset": 17, "architecture": "BertModel"}
    write_manifest(bucket, Manifest("sentence-transformers/all-MiniLM-L6-v2", commit, "fp32",
                                    describe_files(bucket), made, LONG_AGO))
    return bucket


def test_ls_and_verify_leave_an_onnx_export_as_last_used(pulled, onnx_built):
    bucket = plant_export(pulled, onnx_built)
    os.utime(bucket / "manifest.json", (LONG_AGO, LONG_AGO))
    graph = bucket / "model.onnx"  # shared with onnx_built: its mtime stays
    os.utime(graph, ns=(LONG_AGO * 10**9, graph.stat().st_mtime_ns))

    def export_used() -> float:
        rows = json.loads(pulled("ls", "--json").stdout)
        row, = (r for r in rows if r["kind"] == "onnx-export")
        return row["last_used"]

    before = max(max(p.stat().st_atime, p.stat().st_mtime) for p in bucket.iterdir())
    assert export_used() == before
    for args in (["ls"], ["du"], ["verify"], ["verify", "--repair"]):
        proc = pulled(*args)
        assert proc.returncode == 0, (args, proc.stderr)
    assert export_used() == before
