"""Issue #10, pull: signals stop a pull at once and it resumes; no write goes through a link
planted in the cache; error messages name what they are about; --json counts real bytes."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
from support.homes import damage, own
from support.hub import MINILM, resolve_gets, settle
from support.runner import one_line_error


def _etag(hub, path: str = "model.safetensors") -> str:
    return hub.snapshot(MINILM).files[path].etag


def _wait_for_bytes(proc, path: Path, at_least: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.stat().st_size >= at_least:
            return
        if proc.poll() is not None:
            raise AssertionError(f"pull ended early: {proc.returncode}\n{proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError("the download never got going")


def _links(repo_dir: Path) -> list[Path]:
    return [p for p in (repo_dir / "snapshots").rglob("*") if p.is_symlink()]


# -- 3. Ctrl-C and SIGTERM stop a pull mid-file, keep the partial file, and it resumes --------


@pytest.mark.e2e  # a real SIGINT/SIGTERM to a pull, and the exit code it leaves
@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_signal_mid_file_exits_at_once_keeps_partial_and_resumes(embctl, hub, sig, code, word):
    # About 2.5 MB/s: the 90 MB weights would take ~35 s, so the signal lands mid-file.
    hub.set_fault(MINILM, "model.safetensors", delay_s=0.05, chunk_size=128 * 1024)
    # A shell running the tests in the background ignores SIGINT for its children: undo that.
    proc = embctl.popen("pull", "all-MiniLM-L6-v2",
                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    incomplete = embctl.repo_dir / "blobs" / f"{_etag(hub)}.incomplete"
    _wait_for_bytes(proc, incomplete, 3_000_000)
    sent = time.monotonic()
    os.kill(proc.pid, sig)
    rc = proc.wait(timeout=60)
    elapsed = time.monotonic() - sent
    stderr = proc.stderr.read()
    print(f"\n{signal.Signals(sig).name}: exit {rc} {elapsed:.3f} s after the signal")
    assert rc == code, stderr
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in stderr and f"embctl: {word}" in stderr, stderr
    size = hub.snapshot(MINILM).files["model.safetensors"].size
    already = incomplete.stat().st_size
    assert 0 < already < size
    assert not (embctl.repo_dir / "blobs" / _etag(hub)).exists()
    # Nothing half-made is published: links the stopped pull made are rolled back, no ref.
    assert all(link.exists() for link in _links(embctl.repo_dir))
    assert not (embctl.repo_dir / "refs" / "main").exists()
    assert json.loads(embctl("ls", "--json").stdout)[0]["status"] == "incomplete"
    # The next pull continues the partial file: the hub sends only the remaining bytes.
    hub.clear_faults()
    settle(hub)
    hub.reset_stats()
    proc = embctl("pull", "all-MiniLM-L6-v2", "--json")
    assert proc.returncode == 0, proc.stderr
    gets = [r for r in hub.requests if r.path.endswith("/model.safetensors") and r.method == "GET"]
    assert [r.range for r in gets] == [f"bytes={already}-"]
    assert resolve_gets(hub)["model.safetensors"] == size - already
    result = json.loads(proc.stdout)[0]
    assert result["downloaded_bytes"] == sum(resolve_gets(hub).values())
    assert embctl("verify").returncode == 0


# -- 7. no write goes through a link planted in the cache -------------------------------------


def _outside(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(b"precious\n")
    victim.chmod(0o600)
    return outside, victim


def _plant(embctl, hub, where: str, outside: Path, victim: Path) -> Path:
    repo = embctl.repo_dir
    commit = hub.commit_sha(MINILM)
    etag = _etag(hub)
    planted = {
        "incomplete": (repo / "blobs" / f"{etag}.incomplete", victim),
        "blob": (repo / "blobs" / etag, victim),
        "blobs-folder": (repo / "blobs", outside),
        "snapshot-folder": (repo / "snapshots" / commit, outside),
        "refs-folder": (repo / "refs", outside),
        "record": (repo / ".embctl-pull.json", victim),
        "lock": (embctl.cache / ".locks" / repo.name / f"{etag}.lock", victim),
        "locks-folder": (embctl.cache / ".locks" / repo.name, outside),
        "repo-folder": (repo, outside),
    }
    link, target = planted[where]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=target.is_dir())
    return link


WHERE = ["incomplete", "blob", "blobs-folder", "snapshot-folder", "refs-folder", "record",
         "lock", "locks-folder", "repo-folder"]


@pytest.mark.parametrize("where", WHERE)
def test_pull_never_writes_through_a_planted_link(embctl, hub, tmp_path, where):
    outside, victim = _outside(tmp_path)
    link = _plant(embctl, hub, where, outside, victim)
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc)
    assert str(link) in line and "symbolic link" in line, line
    assert victim.read_bytes() == b"precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert link.is_symlink()  # refused, not "repaired" by deleting what someone put there


def test_repair_never_writes_through_a_planted_link(pulled, hub, tmp_path):
    outside, victim = _outside(tmp_path)
    etag = _etag(hub, "config.json")
    blob = pulled.repo_dir / "blobs" / etag
    blob.unlink()  # a missing blob: --repair downloads it again
    link = blob.with_name(f"{etag}.incomplete")
    link.symlink_to(victim)
    proc = pulled("verify", "all-MiniLM-L6-v2", "--repair")
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert str(link) in line, line
    assert victim.read_bytes() == b"precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_import_never_writes_through_a_planted_link(embctl, hub, tmp_path):
    from support.hub import minilm_source

    outside, victim = _outside(tmp_path)
    link = embctl.cache / "models--my-org--my-minilm" / "blobs"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)
    proc = embctl("pull", "my-org/my-minilm", "--from", str(minilm_source()))
    assert proc.returncode == 1
    assert str(link) in one_line_error(proc)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


# -- 10. messages that name what they are about; bytes that really arrived --------------------


def test_unknown_revision_is_named(embctl, hub):
    proc = embctl("pull", "all-MiniLM-L6-v2@nosuchrev")
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "nosuchrev" in line and "not found" in line, line
    assert not embctl.repo_dir.exists() or not _links(embctl.repo_dir)


def test_offline_repair_and_remote_do_not_claim_the_model_is_missing(pulled, hub):
    offline = {"HF_HUB_OFFLINE": "1"}
    config = next(p for p in _links(pulled.repo_dir) if p.name == "config.json")
    blob = own(config)  # this test's own copy: the shared, hard-linked blob stays intact
    blob.chmod(0o644)
    damage(config, lambda data: data.extend(b" "))  # a corrupt blob --repair would fetch again
    corrupt = blob.read_bytes()
    proc = pulled("verify", "all-MiniLM-L6-v2", "--repair", env=offline)
    assert proc.returncode == 1
    assert "not in the cache" not in proc.stdout + proc.stderr
    assert "HF_HUB_OFFLINE=1" in proc.stdout and "hash mismatch" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr
    assert blob.read_bytes() == corrupt and config.is_symlink()  # offline: nothing touched
    assert hub.requests == []
    proc = pulled("verify", "all-MiniLM-L6-v2", "--remote", env=offline)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "not in the cache" not in line and "HF_HUB_OFFLINE" in line, line
    assert hub.requests == []
    # Online, the same commands do their job on the same cached model.
    assert pulled("verify", "all-MiniLM-L6-v2", "--repair").returncode == 0
    assert pulled("verify", "all-MiniLM-L6-v2", "--remote").returncode == 0


def test_missing_blob_message_has_no_none(pulled, hub):
    etag = _etag(hub, "config.json")
    (pulled.repo_dir / "blobs" / etag).unlink()
    proc = pulled("verify", "all-MiniLM-L6-v2")
    assert proc.returncode == 1
    assert "None" not in proc.stdout and "missing blob" in proc.stdout, proc.stdout
    assert etag in proc.stdout


def test_json_counts_bytes_that_arrived_not_bytes_planned(embctl, hub, hub_root):
    # A partial weights file (as a stopped pull leaves it): only the rest crosses the network.
    real = (hub_root / MINILM / "model.safetensors").read_bytes()
    blobs = embctl.repo_dir / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{_etag(hub)}.incomplete").write_bytes(real[:30_000_000])
    # Another process already fetched config.json's blob (its lock is free, its link not made).
    config_etag = _etag(hub, "config.json")
    (blobs / config_etag).write_bytes((hub_root / MINILM / "config.json").read_bytes())
    proc = embctl("pull", "all-MiniLM-L6-v2", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)[0]
    sent = resolve_gets(hub)
    assert "config.json" not in sent
    assert sent["model.safetensors"] == len(real) - 30_000_000
    assert result["downloaded_bytes"] == sum(sent.values())
    assert result["downloaded_files"] == len(sent)
    assert embctl("verify").returncode == 0
