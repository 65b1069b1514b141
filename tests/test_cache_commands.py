"""ls, du, rm and verify on a real cache (the CLI in-process, each test in its own home)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from support.homes import own_blobs
from support.hub import MINILM, make_repo
from support.inprocess import environment
from support.runner import one_line_error


def scan_warnings(run) -> str:
    """huggingface_hub's own scan of the cache: the count of its warnings, then each."""
    import huggingface_hub as h

    r = h.scan_cache_dir(run.cache)
    return "\n".join([str(len(r.warnings)), *(str(w) for w in r.warnings)])


def replace_bytes(path: Path, offset: int) -> None:
    """Flip one byte by writing a new file (never write into a file that may be hard-linked)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))


def blob_of(run, name: str) -> Path:
    link = next((run.repo_dir / "snapshots").glob(f"*/{name}"))
    return link.resolve()


def test_ls_json_and_table(pulled, hub):
    rows = json.loads(pulled("ls", "--json").stdout)
    assert len(rows) == 1
    row = rows[0]
    blobs = sum(p.stat().st_size for p in (pulled.repo_dir / "blobs").iterdir())
    assert row["kind"] == "model" and row["ref"] == "all-MiniLM-L6-v2"
    assert row["repo_id"] == MINILM and row["backend"] == "st" and row["dim"] == 384
    assert row["revision"] == hub.commit_sha(MINILM)
    assert row["size_bytes"] == blobs and isinstance(row["size_bytes"], int)
    assert row["status"] == "ok" and row["path"] == str(pulled.repo_dir)
    table = pulled("ls")
    assert table.returncode == 0
    assert "all-MiniLM-L6-v2" in table.stdout and "384" in table.stdout
    assert hub.commit_sha(MINILM)[:8] in table.stdout


def test_ls_filters_sort_and_pattern(pulled, hub):
    def refs(*args):
        proc = pulled("ls", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return [r["ref"] for r in json.loads(proc.stdout)]

    assert refs("--filter", "size>1GB") == []
    assert refs("--filter", "size<1GB") == ["all-MiniLM-L6-v2"]
    assert refs("--filter", "used>7d") == []
    assert refs("--filter", "used<7d", "--filter", "kind=model") == ["all-MiniLM-L6-v2"]
    assert refs("MiniLM") == ["all-MiniLM-L6-v2"]
    assert refs("BAAI/*") == []
    assert refs("--sort", "size") == ["all-MiniLM-L6-v2"]
    bad = pulled("ls", "--filter", "bogus")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_ls_shows_models_other_tools_put_in_the_cache(embctl, hub, hub_root):
    make_repo(hub_root, "other/tool-model", {"config.json": '{"hidden_size": 64}',
                                             "model.safetensors": b"\0" * 2048})
    with environment(embctl.env):  # huggingface_hub alone, in the home's environment
        import huggingface_hub as h

        h.snapshot_download("other/tool-model")
    rows = json.loads(embctl("ls", "--json").stdout)
    assert [(r["repo_id"], r["dim"], r["status"]) for r in rows] == [
        ("other/tool-model", 64, "ok")]


def test_du_counts_shared_blobs_once_and_incomplete(pulled):
    size = json.loads(pulled("du", "--json").stdout)
    blobs = sum(p.stat().st_size for p in (pulled.repo_dir / "blobs").iterdir())
    plugged = size["matrices"] + size["onnx_exports"]  # plugin stores: none here
    assert size == {"models": blobs, "vectors": size["vectors"], "matrices": size["matrices"],
                    "onnx_exports": size["onnx_exports"], "incomplete": 0, "other": 0,
                    "total": blobs + size["vectors"] + plugged}
    # A second repo whose blobs are hard links of the first (as a shared blob store makes them).
    twin = pulled.cache / "models--someone--minilm-copy"
    shutil.copytree(pulled.repo_dir, twin, symlinks=True, copy_function=os.link)
    # An interrupted download.
    (pulled.repo_dir / "blobs" / ("ab" * 32 + ".incomplete")).write_bytes(b"x" * 12345)
    after = json.loads(pulled("du", "--json").stdout)
    assert after["models"] == blobs
    assert after["incomplete"] == 12345
    assert all(isinstance(v, int) for v in after.values())
    assert len(json.loads(pulled("ls", "--json").stdout)) == 2
    human = pulled("du")
    assert human.returncode == 0 and "total" in human.stdout


def test_rm_needs_yes_without_a_terminal(pulled):
    proc = pulled("rm", "all-MiniLM-L6-v2")
    assert proc.returncode == 1
    assert "-y" in one_line_error(proc)
    assert pulled.repo_dir.exists()


def test_rm_dry_run_then_rm(pulled):
    own_blobs(pulled.home)  # a blob still linked from the shared home frees nothing
    blobs = sum(p.stat().st_size for p in (pulled.repo_dir / "blobs").iterdir())
    dry = pulled("rm", "all-MiniLM-L6-v2", "--dry-run", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout)["freed_bytes"] == blobs
    assert pulled.repo_dir.exists()
    proc = pulled("rm", "all-MiniLM-L6-v2", "-y")
    assert proc.returncode == 0, proc.stderr
    assert f"{blobs:,} bytes" in proc.stderr
    assert not pulled.repo_dir.exists()
    assert scan_warnings(pulled) == "0"
    assert json.loads(pulled("ls", "--json").stdout) == []
    again = pulled("rm", "all-MiniLM-L6-v2", "-y")
    assert again.returncode == 1 and "not in the cache" in one_line_error(again)


def test_rm_one_revision_keeps_the_other(embctl, hub, hub_root):
    files = {"config.json": '{"hidden_size": 8}', "modules.json": "[]",
             "model.safetensors": b"\1" * 50_000}
    make_repo(hub_root, "acme/two-revs", files)
    make_repo(hub_root, "acme/two-revs", {**files, "model.safetensors": b"\2" * 60_000},
              revision="v2")
    assert embctl("pull", "acme/two-revs").returncode == 0
    assert embctl("pull", "acme/two-revs@v2").returncode == 0
    repo = embctl.cache / "models--acme--two-revs"
    assert len(list((repo / "snapshots").iterdir())) == 2
    proc = embctl("rm", "acme/two-revs", "--revision", "v2", "-y", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["freed_bytes"] == 60_000  # only the blob v2 alone used
    assert [p.name for p in (repo / "snapshots").iterdir()] == [hub.commit_sha("acme/two-revs")]
    assert not (repo / "refs" / "v2").exists()
    assert scan_warnings(embctl) == "0"
    assert embctl("verify").returncode == 0


def test_rm_never_follows_symlinks_out_of_the_cache(pulled, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("do not delete")
    snap = next((pulled.repo_dir / "snapshots").iterdir())
    (snap / "escape").symlink_to(outside, target_is_directory=True)
    (pulled.repo_dir / "blobs" / "evil").symlink_to(outside / "keep.txt")
    proc = pulled("rm", "all-MiniLM-L6-v2", "-y")
    assert proc.returncode == 0, proc.stderr
    assert (outside / "keep.txt").read_text() == "do not delete"


def test_rm_prune(pulled):
    repo = pulled.repo_dir
    old = time.time() - 3600
    stale = repo / "blobs" / ("cd" * 32 + ".incomplete")
    stale.write_bytes(b"y" * 1000)
    orphan = repo / "blobs" / ("ef" * 20)
    orphan.write_bytes(b"z" * 2000)
    detached = repo / "snapshots" / ("0" * 40)
    detached.mkdir()
    (detached / "config.json").symlink_to(os.path.relpath(orphan, detached))
    fresh = repo / "blobs" / ("aa" * 32 + ".incomplete")  # a download in progress right now
    fresh.write_bytes(b"w" * 10)
    for p in (stale, orphan, detached):
        os.utime(p, (old, old), follow_symlinks=False)
    dry = pulled("rm", "--prune", "--dry-run", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout)["freed_bytes"] == 3000
    proc = pulled("rm", "--prune", "-y")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and not orphan.exists() and not detached.exists()
    assert fresh.exists()
    fresh.unlink()
    assert scan_warnings(pulled) == "0"
    assert pulled("verify").returncode == 0


def test_verify_finds_and_repairs_a_flipped_byte(pulled, hub):
    assert pulled("verify").returncode == 0
    weights = blob_of(pulled, "model.safetensors")
    replace_bytes(weights, 1_000_000)
    proc = pulled("verify", "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    [problem] = report["problems"]
    assert problem["path"] == "model.safetensors" and problem["problem"] == "hash_mismatch"
    assert problem["expected"] == weights.name and problem["actual"] != weights.name
    human = pulled("verify")
    assert human.returncode == 1 and "model.safetensors" in human.stdout
    assert weights.name in human.stdout
    hub.reset_stats()
    fixed = pulled("verify", "--repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    sent = {p: n for (_, p), n in hub.bytes_by_path.items() if n}
    assert set(sent) == {"model.safetensors"}  # only the bad file is fetched again
    assert pulled("verify").returncode == 0


def test_verify_missing_blob_and_remote_listing(pulled, hub):
    blob_of(pulled, "vocab.txt").unlink()
    snap = next((pulled.repo_dir / "snapshots").iterdir())
    extra = pulled.repo_dir / "blobs" / ("12" * 20)
    extra.write_bytes(b"not from the hub")
    (snap / "stray.txt").symlink_to(os.path.relpath(extra, snap))
    proc = pulled("verify", "all-MiniLM-L6-v2", "--remote", "--json")
    assert proc.returncode == 1
    problems = {(p["path"], p["problem"]) for p in json.loads(proc.stdout)["problems"]}
    assert ("vocab.txt", "missing_blob") in problems
    assert ("stray.txt", "unexpected_file") in problems
    assert ("stray.txt", "hash_mismatch") in problems
    offline = pulled("verify", env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1 and "vocab.txt" in offline.stdout
    repaired = pulled("verify", "all-MiniLM-L6-v2", "--repair")
    assert (snap / "vocab.txt").exists()
    assert "vocab.txt" in repaired.stdout


def test_verify_unknown_ref(pulled):
    proc = pulled("verify", "nobody/nothing")
    assert proc.returncode == 1 and "not in the cache" in one_line_error(proc)
