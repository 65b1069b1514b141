"""rm by policy: --filter (ls's filter language) and --max-size (least recently used first),
a "last used" that embctl's own uses keep true, and models a running embctl holds left alone.

Real caches pulled from the test hub; small extra repos made with make_repo.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.homes import own_blobs
from support.hub import make_repo
from support.runner import embctl_argv, heavy_imports, one_line_error

LONG_AGO = time.time() - 400 * 86400


def pull_tiny(run, hub_root: Path, sizes: dict[str, int]) -> None:
    """Pull one small st model per ``name: size`` (repo ``policy/<name>``)."""
    for i, (name, size) in enumerate(sizes.items()):
        make_repo(hub_root, f"policy/{name}", {"config.json": '{"hidden_size": 8}',
                                                "modules.json": "[]",
                                                "model.safetensors": bytes([i + 1]) * size})
        proc = run("pull", f"policy/{name}", "-q")
        assert proc.returncode == 0, proc.stderr


def age_blobs(run, repo_id: str, when: float = LONG_AGO) -> None:
    """As on a noatime mount: the blobs look untouched since ``when``."""
    blobs = run.cache / f"models--{repo_id.replace('/', '--')}" / "blobs"
    for blob in blobs.iterdir():
        os.utime(blob, (when, when))


def use(run, ref: str, tmp_path: Path) -> None:
    """A use of ``ref`` that embctl records (an export, which reads every file)."""
    dest = tmp_path / f"export-{ref.replace('/', '-')}-{time.monotonic_ns()}"
    proc = run("export", ref, "--to", str(dest), "-q")
    assert proc.returncode == 0, proc.stderr


def models(run) -> list[str]:
    return sorted(r["repo_id"] for r in json.loads(run("ls", "--json").stdout)
                  if r["kind"] == "model")


def test_max_size_removes_exactly_the_least_recently_used(embctl, hub_root, tmp_path):
    pull_tiny(embctl, hub_root, {"lru-a": 50_000, "lru-b": 60_000, "lru-c": 70_000})
    for name in ("lru-a", "lru-b", "lru-c"):
        age_blobs(embctl, f"policy/{name}")  # the atime says nothing: the record decides
    for name in ("lru-c", "lru-a", "lru-b"):  # c is the least recently used
        use(embctl, f"policy/{name}", tmp_path)
        time.sleep(0.05)
    used = [r["repo_id"] for r in json.loads(embctl("ls", "--sort", "used", "--json").stdout)]
    assert used == ["policy/lru-b", "policy/lru-a", "policy/lru-c"]
    du = json.loads(embctl("du", "--json").stdout)
    ours = du["total"] - du["other"]
    limit = ours - 70_000  # removing c alone is enough
    dry = embctl("rm", "--max-size", str(limit), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert [r["repo_id"] for r in report["removed"]] == ["policy/lru-c"]
    assert report["dry_run"] is True and report["skipped"] == []
    assert isinstance(report["freed_bytes"], int) and report["freed_bytes"] >= 70_000
    assert models(embctl) == ["policy/lru-a", "policy/lru-b", "policy/lru-c"]
    refused = embctl("rm", "--max-size", str(limit))  # no terminal, no -y
    assert refused.returncode == 1 and "-y" in one_line_error(refused)
    assert models(embctl) == ["policy/lru-a", "policy/lru-b", "policy/lru-c"]
    done = embctl("rm", "--max-size", str(limit), "-y", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["freed_bytes"] == report["freed_bytes"]
    assert models(embctl) == ["policy/lru-a", "policy/lru-b"]
    after = json.loads(embctl("du", "--json").stdout)
    assert after["total"] - after["other"] <= limit
    again = embctl("rm", "--max-size", str(limit), "-y", "--json")
    assert json.loads(again.stdout)["removed"] == []


def test_max_size_removes_incomplete_downloads_first(embctl, hub_root):
    pull_tiny(embctl, hub_root, {"inc-a": 40_000})
    repo = embctl.cache / "models--policy--inc-a"
    stale = repo / "blobs" / ("cd" * 32 + ".incomplete")
    stale.write_bytes(b"y" * 5000)
    os.utime(stale, (LONG_AGO, LONG_AGO))
    du = json.loads(embctl("du", "--json").stdout)
    proc = embctl("rm", "--max-size", str(du["total"] - du["other"] - 1000), "-y", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["kind"] for r in json.loads(proc.stdout)["removed"]] == ["incomplete"]
    assert not stale.exists() and models(embctl) == ["policy/inc-a"]


def test_an_old_atime_and_a_recent_embctl_use_count_as_recently_used(embctl, hub_root,
                                                                     tmp_path):
    pull_tiny(embctl, hub_root, {"atime-a": 10_000})
    age_blobs(embctl, "policy/atime-a")
    stale = embctl("ls", "--filter", "used>30d", "--json")
    assert [r["repo_id"] for r in json.loads(stale.stdout)] == ["policy/atime-a"]
    use(embctl, "policy/atime-a", tmp_path)
    age_blobs(embctl, "policy/atime-a")  # reading the files may have moved the atime
    assert json.loads(embctl("ls", "--filter", "used>30d", "--json").stdout) == []
    row, = json.loads(embctl("ls", "--filter", "used<1h", "--json").stdout)
    assert row["last_used"] > time.time() - 3600
    assert "usage.json" in os.listdir(embctl.home / "embctl")
    proc = embctl("rm", "--filter", "used>30d", "-y", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["removed"] == []
    assert models(embctl) == ["policy/atime-a"]


def test_rm_filter_by_used_size_kind_and_backend(embctl, hub_root, tmp_path):
    pull_tiny(embctl, hub_root, {"flt-a": 20_000, "flt-b": 90_000, "flt-c": 30_000})
    for name in ("flt-a", "flt-b", "flt-c"):
        age_blobs(embctl, f"policy/{name}")
    use(embctl, "policy/flt-a", tmp_path)

    def removed(*args: str) -> list[str]:
        proc = embctl("rm", *args, "--dry-run", "--json")
        assert proc.returncode == 0, proc.stderr
        return sorted(r["repo_id"] for r in json.loads(proc.stdout)["removed"])

    assert removed("--filter", "used>30d") == ["policy/flt-b", "policy/flt-c"]
    assert removed("--filter", "size>50KB") == ["policy/flt-b"]
    assert removed("--filter", "used>30d", "--filter", "size<50KB") == ["policy/flt-c"]
    assert removed("--filter", "kind=vectors") == []
    assert removed("--filter", "backend=st", "--filter", "repo=policy/flt-[ab]") == [
        "policy/flt-a", "policy/flt-b"]
    assert removed("--filter", "backend=openai") == []
    proc = embctl("rm", "--filter", "size>50KB", "-y", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and isinstance(report["freed_bytes"], int)
    assert report["freed_bytes"] >= 90_000 and report["dry_run"] is False
    assert models(embctl) == ["policy/flt-a", "policy/flt-c"]
    refused = embctl("rm", "--filter", "used>30d")  # no terminal, no -y
    assert refused.returncode == 1 and "-y" in one_line_error(refused)
    assert models(embctl) == ["policy/flt-a", "policy/flt-c"]


def test_rm_filter_mistakes_are_usage_errors(pulled):
    for args in (["--filter", "kind=modle"], ["--filter", "colour=red"],
                 ["--filter", "used>soon"], ["--max-size", "lots"],
                 ["all-MiniLM-L6-v2", "--filter", "used>1d"],
                 ["--filter", "used>1d", "--max-size", "1GB"]):
        proc = pulled("rm", *args, "-y")
        assert proc.returncode == 2, (args, proc.stderr)
        one_line_error(proc)
    assert pulled.repo_dir.exists()


@pytest.mark.e2e  # a second embctl process holds the model while rm runs
def test_a_model_held_by_a_running_embed_is_skipped(pulled):
    usage = pulled.home / "embctl" / "usage.json"
    embed = subprocess.Popen(embctl_argv("embed", "all-MiniLM-L6-v2"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=pulled.env)
    try:
        deadline = time.time() + 120
        while not usage.exists():  # the hold is taken before the use is recorded
            assert embed.poll() is None, embed.stderr.read()
            assert time.time() < deadline
            time.sleep(0.1)
        for args in (["--max-size", "0"], ["--filter", "kind=model"]):
            proc = pulled("rm", *args, "-y", "--json")
            assert proc.returncode == 0, proc.stderr
            report = json.loads(proc.stdout)
            assert report["removed"] == []
            assert [s["repo_id"] for s in report["skipped"]] == [
                "sentence-transformers/all-MiniLM-L6-v2"]
            assert "skipping model all-MiniLM-L6-v2: in use" in proc.stderr
            assert pulled.repo_dir.exists()
    finally:
        embed.communicate(input=b"", timeout=300)
    assert embed.returncode == 0
    proc = pulled("rm", "--max-size", "0", "-y", "--json")  # no longer held
    assert [r["repo_id"] for r in json.loads(proc.stdout)["removed"]] == [
        "sentence-transformers/all-MiniLM-L6-v2"]
    assert not pulled.repo_dir.exists()


def test_embctl_max_size_after_pull_never_removes_what_was_pulled(embctl, hub_root, tmp_path):
    pull_tiny(embctl, hub_root, {"env-a": 50_000, "env-b": 60_000})
    for name in ("env-a", "env-b"):
        age_blobs(embctl, f"policy/{name}")
    use(embctl, "policy/env-a", tmp_path)  # b is the least recently used
    make_repo(hub_root, "policy/env-c", {"config.json": '{"hidden_size": 8}',
                                         "modules.json": "[]",
                                         "model.safetensors": b"\7" * 200_000})
    bad = embctl("pull", "policy/env-c", env={"EMBCTL_MAX_SIZE": "lots"})
    assert bad.returncode == 2 and "EMBCTL_MAX_SIZE" in one_line_error(bad)
    assert models(embctl) == ["policy/env-a", "policy/env-b"]
    # 150 kB: b goes, then a; c (200 kB, just pulled) stays even though it alone is too big.
    proc = embctl("pull", "policy/env-c", env={"EMBCTL_MAX_SIZE": "150KB"})
    assert proc.returncode == 0, proc.stderr
    line, = [ln for ln in proc.stderr.splitlines() if ln.startswith("EMBCTL_MAX_SIZE")]
    assert "model policy/env-b" in line and "model policy/env-a" in line
    assert line.index("env-b") < line.index("env-a") and "env-c" not in line
    assert models(embctl) == ["policy/env-c"]
    quiet = embctl("pull", "policy/env-c", env={"EMBCTL_MAX_SIZE": "150KB"})
    assert quiet.returncode == 0 and "EMBCTL_MAX_SIZE" not in quiet.stderr


@pytest.mark.e2e  # what a fresh interpreter imports
def test_rm_by_policy_imports_no_heavy_library(pulled):
    for args in (["rm", "--filter", "used>30d", "--dry-run"],
                 ["rm", "--max-size", "1GB", "--dry-run", "--json"]):
        heavy, stderr = heavy_imports(pulled.env, *args)
        assert heavy == [], (args, stderr)


def test_filter_and_max_size_reach_the_vector_caches(pulled):
    proc = pulled("embed", "all-MiniLM-L6-v2", "--lines", input="one\ntwo\nthree\n")
    assert proc.returncode == 0, proc.stderr
    own_blobs(pulled.home)  # rm frees the model's bytes only where no other home links them
    rows = json.loads(pulled("ls", "--json").stdout)
    assert sorted(r["kind"] for r in rows) == ["model", "vectors"]
    dry = json.loads(pulled("rm", "--filter", "kind=vectors", "--dry-run", "--json").stdout)
    assert [r["kind"] for r in dry["removed"]] == ["vectors"] and dry["freed_bytes"] > 0
    du = json.loads(pulled("du", "--json").stdout)
    everything = json.loads(pulled("rm", "--max-size", "0", "--dry-run", "--json").stdout)
    assert sorted(r["kind"] for r in everything["removed"]) == ["model", "vectors"]
    assert everything["freed_bytes"] == du["models"] + du["vectors"]
    proc = pulled("rm", "--filter", "kind=vectors", "-y", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["freed_bytes"] == dry["freed_bytes"] == du["vectors"]
    assert [r["kind"] for r in json.loads(pulled("ls", "--json").stdout)] == ["model"]


HOLDER = ("import sys, time; from embctl.models.holds import hold\n"
          "with hold(sys.argv[1], 'acme/held'):\n"
          "    print('held', flush=True); sys.stdin.read()\n")


@pytest.mark.e2e  # other processes hold the lock: the kernel's flock between processes
def test_a_removal_claims_the_models_it_deletes(tmp_path):
    """Between planning and deleting, rm holds each model exclusively: a use already running
    shows as busy; a use starting meanwhile waits until the removal is done."""
    from embctl.models.holds import claimed, held

    cache = tmp_path / "hub"
    cache.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    user = subprocess.Popen([sys.executable, "-c", HOLDER, str(cache)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert user.stdout.readline() == "held\n"
        assert held(cache, "acme/held") and not held(cache, "acme/free")
        with claimed(cache, ["acme/held", "acme/free"]) as busy:
            assert busy == {"acme/held"}
    finally:
        user.communicate("", timeout=60)
    with claimed(cache, ["acme/held"]) as busy:
        assert busy == set()
        late = subprocess.Popen([sys.executable, "-c", HOLDER, str(cache)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=env)
        time.sleep(1.0)
        assert late.poll() is None and not held(cache, "acme/free")
        assert select.select([late.stdout], [], [], 0)[0] == []
    assert late.stdout.readline() == "held\n"
    late.communicate("", timeout=60)
