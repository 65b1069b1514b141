"""embctl pull against the local hub: selection, idempotence, resume, concurrency, faults.

Pulls run in-process; the e2e tier holds what needs a process boundary: a pull killed with
SIGKILL, concurrent pulls, a progress bar on a real terminal, and sentence-transformers
loading what pull cached in a fresh, offline interpreter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.hub import (
    MINILM,
    MINILM_DECOYS,
    MINILM_NEEDED,
    make_repo,
    minilm_source,
    resolve_gets,
    settle,
)
from support.runner import embctl_argv, one_line_error


def snapshot_links(repo_dir: Path) -> dict[str, Path]:
    links = {}
    for link in (repo_dir / "snapshots").rglob("*"):
        if link.is_symlink():
            links[link.relative_to(repo_dir / "snapshots").as_posix()] = link
    return links


@pytest.mark.e2e  # sentence-transformers loads the cache in a fresh process
def test_pull_fetches_only_needed_files_and_loads_offline(embctl, hub):
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # summaries go to stderr
    assert "pulled sentence-transformers/all-MiniLM-L6-v2" in proc.stderr
    sent = resolve_gets(hub)
    assert set(sent) == MINILM_NEEDED
    assert not set(sent) & set(MINILM_DECOYS)
    snap = hub.snapshot(MINILM)
    assert sum(sent.values()) == sum(snap.files[p].size for p in MINILM_NEEDED)
    # The listing's hashes stand in for per-file HEAD requests; each download is checked.
    assert not [r for r in hub.requests if r.method == "HEAD"]
    # What pull put in the cache is what sentence-transformers loads, offline, in a fresh process.
    code = (
        "from sentence_transformers import SentenceTransformer\n"
        "m = SentenceTransformer('all-MiniLM-L6-v2')\n"
        "v = m.encode(['hello world'])\n"
        "print(v.shape[1])\n"
    )
    env = {**embctl.env, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "384"


def test_second_pull_transfers_nothing(pulled, hub):
    proc = pulled("pull", "all-MiniLM-L6-v2", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)[0]
    assert result["up_to_date"] is True
    assert result["downloaded_bytes"] == 0
    assert isinstance(result["size_bytes"], int)
    assert resolve_gets(hub) == {}
    assert not [r for r in hub.requests if "/resolve/" in r.path and r.method == "GET"]


def test_include_and_exclude(embctl, hub):
    proc = embctl("pull", "all-MiniLM-L6-v2", "--include", "onnx/*", "--exclude", "README.md")
    assert proc.returncode == 0, proc.stderr
    sent = set(resolve_gets(hub))
    assert "onnx/model.onnx" in sent
    assert "README.md" not in sent
    assert "pytorch_model.bin" not in sent


@pytest.mark.e2e  # SIGKILL mid-pull
def test_kill_9_mid_pull_then_resume_and_verify(embctl, hub):
    # A slow body keeps the weights download in flight long enough to kill it.
    hub.set_fault(MINILM, "model.safetensors", delay_s=0.05, chunk_size=256 * 1024)
    proc = embctl.popen("pull", "all-MiniLM-L6-v2")
    etag = hub.snapshot(MINILM).files["model.safetensors"].etag
    incomplete = embctl.repo_dir / "blobs" / f"{etag}.incomplete"
    deadline = time.time() + 120
    # Kill once the weights are well under way and a smaller file is already linked in.
    while time.time() < deadline:
        if incomplete.exists() and incomplete.stat().st_size > 1_000_000:
            if snapshot_links(embctl.repo_dir):
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the download never started")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # No snapshot entry points at a partial blob, and no branch points at a partial snapshot.
    links = snapshot_links(embctl.repo_dir)
    assert links and "model.safetensors" not in {p.split("/", 1)[1] for p in links}
    for link in links.values():
        assert not os.readlink(link).endswith(".incomplete")
        assert link.exists()
    assert not (embctl.repo_dir / "refs" / "main").exists()
    # ls lists the model as a partial pull of its commit, on no branch.
    (entry,) = json.loads(embctl("ls", "--json").stdout)
    assert (entry["repo_id"], entry["status"], entry["revision"], entry["refs"]) == (
        MINILM, "partial", hub.commit_sha(MINILM), [])
    assert entry["incomplete_bytes"] >= 1_000_000
    already = incomplete.stat().st_size
    hub.clear_faults()
    settle(hub)  # count only what the resumed pull costs
    hub.reset_stats()
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 0, proc.stderr
    weights = [
        r for r in hub.requests if r.path.endswith("/model.safetensors") and r.method == "GET"
    ]
    assert weights and weights[-1].range == f"bytes={already}-"  # resumed, not restarted
    size = hub.snapshot(MINILM).files["model.safetensors"].size
    assert resolve_gets(hub)["model.safetensors"] == size - already
    verify = embctl("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(embctl("ls", "--json").stdout)[0]["status"] == "ok"


@pytest.mark.e2e  # four concurrent embctl processes
def test_four_concurrent_pulls_move_the_bytes_once(embctl, hub):
    hub.set_fault(MINILM, "model.safetensors", delay_s=0.02, chunk_size=1024 * 1024)
    procs = [embctl.popen("pull", "all-MiniLM-L6-v2") for _ in range(4)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    size = hub.snapshot(MINILM).files["model.safetensors"].size
    assert resolve_gets(hub)["model.safetensors"] == size
    assert embctl("verify").returncode == 0


def test_server_error_leaves_cache_as_it_was(embctl, hub):
    hub.set_fault(MINILM, "model.safetensors", status=500)
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 1
    line = one_line_error(proc)
    # Named by the reference the user gave, then the cause.
    assert line.startswith("embctl: error: all-MiniLM-L6-v2: the Hub answered HTTP 500: "), line
    assert snapshot_links(embctl.repo_dir) == {}
    assert not (embctl.repo_dir / "refs" / "main").exists()
    # ls shows no revision to load, only the downloads the next pull continues (at least the
    # weights' .incomplete file, opened before the 500 arrived).
    (entry,) = json.loads(embctl("ls", "--json").stdout)
    assert (entry["repo_id"], entry["status"], entry["revision"], entry["refs"]) == (
        MINILM, "incomplete", None, [])
    hub.clear_faults()
    assert embctl("pull", "all-MiniLM-L6-v2").returncode == 0
    assert embctl("verify").returncode == 0


def test_dropped_connections_are_resumed_within_a_pull(embctl, hub):
    # Every GET of the weights is cut after 20 MB: the pull continues each time from where the
    # connection dropped, and the finished file is checked against its sha256.
    hub.set_fault(MINILM, "model.safetensors", drop_after=20_000_000, methods=["GET"])
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 0, proc.stderr
    gets = [r for r in hub.requests if r.path.endswith("/model.safetensors") and r.method == "GET"]
    assert len(gets) >= 4 and all(r.range for r in gets[1:])
    # Each retry continues after what the client already holds: strictly increasing offsets.
    starts = [int(r.range.removeprefix("bytes=").rstrip("-")) for r in gets[1:]]
    assert starts == sorted(set(starts)) and starts[0] > 0
    assert embctl("verify").returncode == 0


def test_dead_connection_fails_cleanly_then_resumes(embctl, hub):
    hub.set_fault(MINILM, "model.safetensors", drop_after=0, methods=["GET"])
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "all-MiniLM-L6-v2" in line
    assert snapshot_links(embctl.repo_dir) == {}
    assert not (embctl.repo_dir / "refs" / "main").exists()
    hub.clear_faults()
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 0, proc.stderr
    assert embctl("verify").returncode == 0


def test_corrupted_transfer_is_never_published(embctl, hub):
    hub.set_fault(MINILM, "model.safetensors", corrupt=True, methods=["GET"], times=1)
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 1
    assert "corrupt" in one_line_error(proc)
    assert snapshot_links(embctl.repo_dir) == {}
    assert not list((embctl.repo_dir / "blobs").glob("*.incomplete"))
    assert embctl("pull", "all-MiniLM-L6-v2").returncode == 0
    assert embctl("verify").returncode == 0


def test_escaping_file_name_is_refused(embctl, hub, tmp_path):
    hub.add_extra_entry(MINILM, "../../x")
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 1
    assert "unsafe" in one_line_error(proc)
    assert not list(tmp_path.rglob("x"))
    assert resolve_gets(hub) == {}


def test_unknown_repo_revision_and_gated(embctl, hub, hub_root):
    proc = embctl("pull", "nobody/nothing")
    assert proc.returncode == 1 and "not found" in one_line_error(proc)
    proc = embctl("pull", "all-MiniLM-L6-v2@no-such-branch")
    assert proc.returncode == 1 and "revision" in one_line_error(proc)
    gated = make_repo(hub_root, "acme/gated-model", {"config.json": "{}", "modules.json": "[]"})
    (gated / ".gated").write_text("manual")
    proc = embctl("pull", "acme/gated-model")
    assert proc.returncode == 1 and "gated" in one_line_error(proc)
    assert not list(embctl.cache.glob("models--*/snapshots/*/*"))


def test_offline(embctl, pulled, hub):
    proc = embctl("pull", "all-MiniLM-L6-v2", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1 and "HF_HUB_OFFLINE" in one_line_error(proc)
    assert hub.requests == []
    proc = pulled("pull", "all-MiniLM-L6-v2", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0 and "up to date" in proc.stderr
    assert hub.requests == []


def test_malformed_references_never_reach_the_network(embctl, hub):
    for ref in [
        "",
        "a/../b",
        "/etc/passwd",
        "../x",
        "org//name",
        "org/na me",
        "a/b/c",
        "org/name@",
        "st:",
        "org/name@../../x",
        "bad--name/x",
    ]:
        proc = embctl("pull", ref)
        assert proc.returncode == 2, (ref, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert hub.requests == []
    assert not embctl.cache.exists() or not any(embctl.cache.iterdir())


@pytest.mark.e2e  # sentence-transformers loads it in a fresh process
def test_pull_from_directory_imports_for_offline_use(embctl, hub, tmp_path):
    src = minilm_source()
    proc = embctl("pull", "my-org/my-minilm", "--from", str(src), env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert hub.requests == []
    code = (
        "from sentence_transformers import SentenceTransformer\n"
        "print(SentenceTransformer('my-org/my-minilm').encode(['hi']).shape[1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**embctl.env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "384"
    assert embctl("verify", "my-org/my-minilm").returncode == 0
    proc = embctl("pull", "x/y", "--from", str(tmp_path / "missing"))
    assert proc.returncode == 2


def _seed_partial(embctl, hub, hub_root, data_from) -> Path:
    etag = hub.snapshot(MINILM).files["model.safetensors"].etag
    blobs = embctl.repo_dir / "blobs"
    blobs.mkdir(parents=True)
    partial = blobs / f"{etag}.incomplete"
    partial.write_bytes(data_from((hub_root / MINILM / "model.safetensors").read_bytes()))
    return partial


def test_server_ignoring_range_restarts_the_file(embctl, hub, hub_root):
    _seed_partial(embctl, hub, hub_root, lambda real: real[:5_000_000])
    hub.set_fault(MINILM, "model.safetensors", ignore_range=True, methods=["GET"])
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 0, proc.stderr
    assert embctl("verify").returncode == 0


def test_corrupt_partial_file_is_caught_and_discarded(embctl, hub, hub_root):
    partial = _seed_partial(embctl, hub, hub_root, lambda real: b"\0" * 5_000_000)
    proc = embctl("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 1 and "corrupt" in one_line_error(proc)
    assert not partial.exists()
    assert embctl("pull", "all-MiniLM-L6-v2").returncode == 0
    assert embctl("verify").returncode == 0


@pytest.mark.e2e  # sentence-transformers loads it in a fresh process
def test_sentence_transformers_home_and_cache_dir(embctl, hub, tmp_path):
    st_home = tmp_path / "st-home"
    proc = embctl("pull", "all-MiniLM-L6-v2", "-q", env={"SENTENCE_TRANSFORMERS_HOME":
                                                         str(st_home)})
    assert proc.returncode == 0, proc.stderr
    assert (st_home / "models--sentence-transformers--all-MiniLM-L6-v2").is_dir()
    assert not embctl.cache.exists()
    code = ("from sentence_transformers import SentenceTransformer\n"
            "print(SentenceTransformer('all-MiniLM-L6-v2').encode(['x']).shape[1])\n")
    env = {**embctl.env, "HF_HUB_OFFLINE": "1", "SENTENCE_TRANSFORMERS_HOME": str(st_home)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "384", out.stderr
    custom = tmp_path / "custom"
    assert embctl("pull", "all-MiniLM-L6-v2", "-q", "--cache-dir", str(custom)).returncode == 0
    rows = json.loads(embctl("ls", "--json", "--cache-dir", str(custom)).stdout)
    assert [r["repo_id"] for r in rows] == [MINILM]
    assert embctl("verify", "--cache-dir", str(custom)).returncode == 0


def _run_with_tty_stderr(embctl, *args) -> str:
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(embctl_argv(*args), env=embctl.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(master)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.e2e  # stderr is a real terminal (a pty)
def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise(embctl, hub):
    hub.set_fault(MINILM, "model.safetensors", delay_s=0.02, chunk_size=2 * 1024 * 1024)
    tty = _run_with_tty_stderr(embctl, "pull", "all-MiniLM-L6-v2")
    assert "━" in tty and "MB" in tty  # rich's bar with bytes
    embctl("rm", "all-MiniLM-L6-v2", "-y", check=True)
    plain = embctl("pull", "all-MiniLM-L6-v2")
    assert plain.returncode == 0
    assert "━" not in plain.stderr and "\r" not in plain.stderr
    assert 2 <= len(plain.stderr.splitlines()) <= 6, plain.stderr
