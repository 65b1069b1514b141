"""One cached model, several backends: a pull, an import or a request for one backend never
breaks another (issue: "one model, many backends", cases 1 to 3).

The Hub's ``main`` moves for real: an extra file added to the session hub's repo changes its
commit (`HubServer.add_extra_entry`, reset after each test), or a test's own small repo loses
a file.  Loading is checked by embedding offline with the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

import json
import os
import random
import urllib.request
from pathlib import Path

import pytest
from support.hub import make_repo
from support.runner import Embctl, one_line_error
from support.serve import post, start_serve, stop

MODEL = "all-MiniLM-L6-v2"
REPO = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE = {"HF_HUB_OFFLINE": "1"}
LINES = "where is my refund\nthe weather is sunny\nan invoice for order 1234\n"


def ref_of(runner: Embctl, repo_id: str = REPO) -> str:
    folder = runner.cache / ("models--" + repo_id.replace("/", "--"))
    return (folder / "refs" / "main").read_text().strip()


def model_rows(runner: Embctl) -> dict[str, str]:
    """backend -> revision, of the model rows ``ls --json`` shows."""
    rows = json.loads(runner("ls", "--json", check=True).stdout)
    return {r["backend"]: r["revision"] for r in rows if r["kind"] == "model"}


def embed(runner: Embctl, *args: str) -> str:
    """Embed LINES offline with the st backend; its stderr summary."""
    proc = runner("embed", MODEL, "--lines", *args, input=LINES, env=OFFLINE)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3
    return proc.stderr


def test_pull_onnx_after_main_moved_brings_the_st_files_along(pulled, hub):
    """The Hub's main moved since the st pull: ``pull onnx:`` moves main only with the st
    model's files in the new snapshot (linked: their bytes are cached, none fetched again)."""
    before = ref_of(pulled)
    hub.add_extra_entry(REPO, "NOTES.md", b"main moved\n")
    moved = hub.commit_sha(REPO)
    assert moved != before
    pulled("pull", f"onnx:{MODEL}", check=True)
    assert ref_of(pulled) == moved
    assert hub.bytes_by_path.get((REPO, "model.safetensors"), 0) == 0
    embed(pulled)  # the st model still loads, offline, from the new main
    assert model_rows(pulled) == {"st": moved, "onnx": moved}
    again = pulled("pull", MODEL, env=OFFLINE)
    assert again.returncode == 0 and "up to date" in again.stderr


def _small_repo(root: Path, name: str) -> str:
    """A small repo with the files both st and onnx pull (random weights: pulls only)."""
    rng = random.Random(name)
    repo_id = f"embctl-test/{name}"
    make_repo(root, repo_id, {
        "config.json": json.dumps({"model_type": "bert", "hidden_size": 8}),
        "modules.json": json.dumps([{"idx": 0, "name": "0", "path": "",
                                     "type": "sentence_transformers.models.Transformer"}]),
        "tokenizer.json": "{}",
        "model.safetensors": rng.randbytes(64 * 1024),
        "onnx/model.onnx": rng.randbytes(32 * 1024),
    })
    return repo_id


def test_when_the_new_commit_lacks_a_file_main_stays_and_onnx_uses_its_own(
        embctl, hub, hub_root, tmp_path):
    repo_id = _small_repo(hub_root, f"meet-{os.getpid()}-{tmp_path.name}")
    embctl("pull", repo_id, check=True)
    first = ref_of(embctl, repo_id)
    (hub.repo_dir(repo_id) / "model.safetensors").unlink()  # main moves, without st weights
    second = hub.commit_sha(repo_id)
    proc = embctl("pull", f"onnx:{repo_id}")
    assert proc.returncode == 0, proc.stderr
    assert f"main stays at {first[:8]}" in proc.stderr and "model.safetensors" in proc.stderr
    assert ref_of(embctl, repo_id) == first
    for ref, commit in ((repo_id, first), (f"onnx:{repo_id}", second)):
        offline = embctl("pull", ref, "--json", env=OFFLINE)
        assert offline.returncode == 0, offline.stderr
        assert json.loads(offline.stdout)[0]["revision"] == commit
    assert model_rows(embctl) == {"st": first, "onnx": second}


def _linked_dir(runner: Embctl, into: Path, paths: list[str]) -> Path:
    """A model folder of hard links to the cached snapshot's files (read, never written)."""
    snapshot = runner.repo_dir / "snapshots" / ref_of(runner)
    for path in paths:
        (into / path).parent.mkdir(parents=True, exist_ok=True)
        os.link(os.path.realpath(snapshot / path), into / path)
    return into


ONNX_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "onnx/model.onnx"]


def test_importing_files_the_cache_holds_changes_nothing(pulled, tmp_path):
    pulled("pull", f"onnx:{MODEL}", check=True)
    main = ref_of(pulled)
    snapshots = sorted(os.listdir(pulled.repo_dir / "snapshots"))
    source = _linked_dir(pulled, tmp_path / "same", ONNX_FILES)
    proc = pulled("pull", f"onnx:{MODEL}", "--from", str(source))
    assert proc.returncode == 0, proc.stderr
    assert "nothing imported" in proc.stderr
    assert ref_of(pulled) == main
    assert sorted(os.listdir(pulled.repo_dir / "snapshots")) == snapshots


def test_importing_other_files_keeps_main_and_every_cached_vector(pulled, tmp_path):
    assert "3 computed" in embed(pulled)
    main = ref_of(pulled)
    source = _linked_dir(pulled, tmp_path / "other", ONNX_FILES[:-1])
    (source / "onnx").mkdir()
    (source / "onnx" / "model.onnx").write_bytes(random.Random(7).randbytes(16 * 1024))
    proc = pulled("pull", f"onnx:{MODEL}", "--from", str(source))
    assert proc.returncode == 0, proc.stderr
    assert f"main stays at {main[:8]}" in proc.stderr
    assert ref_of(pulled) == main
    assert "3 cache hits" in embed(pulled)  # same revision, same namespace: every vector hits
    rows = model_rows(pulled)
    assert rows["st"] == main and rows["onnx"] != main


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.loads(answer.read())


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.e2e
def test_the_server_never_pulls_a_backend_the_cache_lacks(pulled, hub):
    """Only st is cached: ``onnx:`` and ``matrix:`` are 404s in OpenAI's shape, nothing is
    fetched (the hub sees no request) or written, and /v1/models lists only what loads."""
    cache_before = _tree(pulled.cache)
    proc, url = start_serve(pulled.env)
    try:
        for name in (f"onnx:{MODEL}", f"matrix:{REPO}"):
            status, _, body = post(url + "/v1/embeddings", {"model": name, "input": "hello"})
            assert status == 404, body
            assert body["error"]["code"] == "model_not_found" and name in body["error"]["message"]
        assert [m["id"] for m in _get(url + "/v1/models")["data"]] == [MODEL]
    finally:
        assert stop(proc) == 0
    assert hub.requests == []
    assert _tree(pulled.cache) == cache_before



def test_onnx_offline_exports_from_what_the_st_pull_cached(noonnx, hub):
    """The bytes an export needs are cached (an st pull of a repo without ONNX files):
    ``pull onnx:`` and ``embed onnx:`` work offline, and the hub hears nothing."""
    from support.onnx_export_fixtures import NOONNX

    proc = noonnx("pull", f"onnx:{NOONNX}", env=OFFLINE)
    assert proc.returncode == 0, proc.stderr
    assert "exporting them with torch" in proc.stderr
    embedded = noonnx("embed", f"onnx:{NOONNX}", "--lines", "-q", input=LINES, env=OFFLINE)
    assert embedded.returncode == 0, embedded.stderr
    assert len(embedded.stdout.splitlines()) == 3
    assert hub.requests == []
    assert set(model_rows(noonnx)) == {"st", "onnx"}


def test_offline_a_backend_whose_hub_files_are_not_cached_is_refused(pulled):
    """The Hub's listing (recorded by the st pull) has ONNX files that are not cached: an
    offline ``pull onnx:`` must not export in their place; one line, exit 1."""
    proc = pulled("pull", f"onnx:{MODEL}", env=OFFLINE)
    assert proc.returncode == 1
    assert "HF_HUB_OFFLINE=1" in one_line_error(proc)
