"""`embctl serve` as a Hub mirror: real clients (embctl pull, huggingface_hub, the hf CLI,
sentence-transformers) pull all-MiniLM-L6-v2 through it into an empty cache, and its answers
carry the Hub's headers and error codes.

The mirror serves a cache where all-MiniLM-L6-v2 was pulled from the test hub (`pulled_home`,
only read); each client runs in a subprocess (HF_ENDPOINT is read at import) with a fresh home,
or in-process (embctl pull, with its own environment).  Every test here talks to a running
``embctl serve`` subprocess: the whole module is in the e2e tier.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.hub import MINILM
from support.runner import Embctl, base_env, one_line_error
from support.serve import output, serving

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

#: A real server with real clients: every test here is end-to-end.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mirror(pulled_home: Path, hub_server):
    """(URL, the served home's runner, the server process): `embctl serve` over the pulled
    cache."""
    served = Embctl.at(pulled_home, hub_server.url)
    with serving(served.env) as (proc, url):
        yield url, served, proc
    assert proc.returncode == 0, output(proc)[1]


def snapshot_of(home: Embctl) -> Path:
    commit = (home.repo_dir / "refs" / "main").read_text().strip()
    return home.repo_dir / "snapshots" / commit


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def request(url: str, method: str, path: str, headers: dict | None = None):
    """(status, headers, body) of one raw request (no client-side normalization)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def run_client(code: str, home: Path, url: str, timeout: float = 300) -> dict:
    """Run ``code`` (which prints one JSON line last) against the mirror in a fresh home."""
    proc = subprocess.run([sys.executable, "-c", code], env=base_env(home, url),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_embctl_pull_through_the_mirror(mirror, tmp_path, hub):
    url, served, _ = mirror
    client = Embctl.at(tmp_path / "client", url)
    proc = client("pull", "all-MiniLM-L6-v2")
    assert proc.returncode == 0, proc.stderr
    assert digests(snapshot_of(client)) == digests(snapshot_of(served))
    assert hub.requests_for("*") == []  # everything came from the mirror
    again = client("pull", "all-MiniLM-L6-v2", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)[0]["up_to_date"] is True


HF_CLIENT = """
import json, huggingface_hub as hf
from huggingface_hub.errors import (EntryNotFoundError, RepositoryNotFoundError,
                                   RevisionNotFoundError)
repo = %(repo)r
api = hf.HfApi()
out = {}
path = hf.snapshot_download(repo)
import os
out["snapshot"] = path
info = api.model_info(repo, files_metadata=True)
out["sha"] = info.sha
out["siblings"] = {s.rfilename: [s.size, s.lfs.sha256 if s.lfs else s.blob_id]
                   for s in info.siblings}
out["config"] = open(hf.hf_hub_download(repo, "config.json", revision=info.sha)).read()
out["tree"] = sorted(e.path for e in api.list_repo_tree(repo, path_in_repo="1_Pooling"))
out["tree_all"] = sorted(e.path for e in api.list_repo_tree(repo, recursive=True))
out["refs"] = [b.name for b in api.list_repo_refs(repo).branches]
out["exists"] = [api.file_exists(repo, "modules.json"), api.file_exists(repo, "nope.json")]
out["paths_info"] = sorted(e.path for e in api.get_paths_info(repo, ["config.json", "1_Pooling",
                                                                   "x"]))
out["safetensors"] = hf.get_safetensors_metadata(repo).parameter_count
for name, call, kind in [
    ("entry", lambda: hf.hf_hub_download(repo, "missing.json"), EntryNotFoundError),
    ("repo", lambda: hf.hf_hub_download("nobody/nothing", "config.json"), RepositoryNotFoundError),
    ("revision", lambda: hf.hf_hub_download(repo, "config.json", revision="nobranch"),
     RevisionNotFoundError),
    ("dataset", lambda: api.dataset_info("nobody/data"), RepositoryNotFoundError),
]:
    try:
        call()
        out[name] = "no error"
    except kind as exc:
        out[name] = type(exc).__name__
print(json.dumps(out))
"""


def test_huggingface_hub_clients(mirror, tmp_path, hub):
    url, served, _ = mirror
    out = run_client(HF_CLIENT % {"repo": MINILM}, tmp_path / "client", url)
    source = snapshot_of(served)
    assert digests(Path(out["snapshot"])) == digests(source)
    assert out["sha"] == source.name
    # What the cache holds, no more: the hub's decoys were never pulled, so never listed.
    assert sorted(out["siblings"]) == sorted(digests(source))
    weights = source / "model.safetensors"
    assert out["siblings"]["model.safetensors"] == [
        weights.stat().st_size, hashlib.sha256(weights.read_bytes()).hexdigest()]
    assert out["config"] == (source / "config.json").read_text()
    assert out["tree"] == ["1_Pooling/config.json"]
    assert "1_Pooling" in out["tree_all"] and "model.safetensors" in out["tree_all"]
    assert out["refs"] == ["main"]
    assert out["exists"] == [True, False]
    assert out["paths_info"] == ["1_Pooling", "config.json"]
    assert sum(out["safetensors"].values()) > 20_000_000  # read through Range requests
    assert (out["entry"], out["repo"], out["revision"], out["dataset"]) == (
        "RemoteEntryNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError",
        "RepositoryNotFoundError")
    assert hub.requests_for("*") == []


def test_hf_download_cli(mirror, tmp_path):
    url, served, _ = mirror
    hf = Path(sys.executable).with_name("hf")
    if not hf.exists():
        pytest.skip("the hf CLI is not installed")
    env = base_env(tmp_path / "client", url)
    proc = subprocess.run([str(hf), "download", MINILM, "--local-dir", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = {k: v for k, v in digests(tmp_path / "out").items() if not k.startswith(".cache/")}
    assert got == digests(snapshot_of(served))


ST_CLIENT = """
import json, sys
from sentence_transformers import SentenceTransformer
texts = ["The refund policy allows returns within 30 days", "Cats sleep a lot"]
through = SentenceTransformer("all-MiniLM-L6-v2", device="cpu").encode(texts)
direct = SentenceTransformer(sys.argv[1], device="cpu").encode(texts)
print(json.dumps({"shape": list(through.shape), "diff": float(abs(through - direct).max())}))
"""


def test_sentence_transformer_through_the_mirror(mirror, tmp_path):
    url, served, _ = mirror
    home = tmp_path / "client"
    proc = subprocess.run([sys.executable, "-c", ST_CLIENT, str(snapshot_of(served))],
                          env=base_env(home, url), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [2, 384] and out["diff"] < 1e-5
    assert (home / "hf" / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2").is_dir()


def test_resolve_headers_range_and_revisions(mirror):
    url, served, _ = mirror
    source = snapshot_of(served)
    commit = source.name
    small = (source / "config.json").read_bytes()
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(small) + small).hexdigest()
    status, h, body = request(url, "HEAD", f"/{MINILM}/resolve/main/config.json")
    assert status == 200 and body == b""
    assert (h["etag"], h["x-repo-commit"], h["content-length"]) == (
        f'"{git_sha1}"', commit, str(len(small)))
    assert "x-linked-etag" not in h

    weights = (source / "model.safetensors").read_bytes()
    sha256 = hashlib.sha256(weights).hexdigest()
    for revision in ("main", commit):
        status, h, _ = request(url, "HEAD", f"/{MINILM}/resolve/{revision}/model.safetensors")
        assert status == 200
        assert (h["etag"], h["x-linked-etag"], h["x-linked-size"], h["content-length"]) == (
            f'"{sha256}"', f'"{sha256}"', str(len(weights)), str(len(weights)))
        assert h["x-repo-commit"] == commit

    status, h, body = request(url, "GET", f"/{MINILM}/resolve/main/model.safetensors",
                              {"Range": "bytes=100-1099"})
    assert status == 206 and body == weights[100:1100]
    assert h["content-range"] == f"bytes 100-1099/{len(weights)}"
    status, h, body = request(url, "GET", f"/{MINILM}/resolve/{commit}/1_Pooling/config.json")
    assert status == 200 and body == (source / "1_Pooling" / "config.json").read_bytes()


@pytest.mark.parametrize(("method", "path", "code"), [
    ("GET", "/api/models/nobody/nothing", "RepoNotFound"),
    ("GET", f"/api/models/{MINILM}/revision/nobranch", "RevisionNotFound"),
    ("GET", f"/api/models/{MINILM}/revision/{'0' * 40}", "RevisionNotFound"),
    ("GET", f"/api/models/{MINILM}/tree/main/onnx", "EntryNotFound"),
    ("HEAD", f"/{MINILM}/resolve/main/missing.json", "EntryNotFound"),
    # On the test hub, not in the cache: a mirror serves what was pulled.
    ("HEAD", f"/{MINILM}/resolve/main/pytorch_model.bin", "EntryNotFound"),
    ("HEAD", "/nobody/nothing/resolve/main/config.json", "RepoNotFound"),
    ("HEAD", f"/{MINILM}/resolve/nobranch/config.json", "RevisionNotFound"),
    ("GET", "/api/datasets/nobody/data", "RepoNotFound"),
    ("GET", "/api/spaces/nobody/space", "RepoNotFound"),
    ("HEAD", f"/datasets/{MINILM}/resolve/main/config.json", "RepoNotFound"),
])
def test_404s_carry_the_hubs_error_codes(mirror, method, path, code):
    url, served, _ = mirror
    status, h, _ = request(url, method, path)
    assert (status, h.get("x-error-code")) == (404, code)
    if code == "EntryNotFound":  # sentence-transformers needs it to call a file absent
        assert h["x-repo-commit"] == snapshot_of(served).name


def test_a_model_not_cached_fails_in_one_line(mirror, tmp_path):
    url, _, _ = mirror
    proc = Embctl.at(tmp_path / "client", url)("pull", "BAAI/bge-small-en-v1.5")
    assert proc.returncode == 1
    assert "not found" in one_line_error(proc)


def test_access_log_on_stderr(mirror):
    url, _, proc = mirror
    assert request(url, "GET", "/healthz")[0] == 200
    deadline = time.monotonic() + 10
    while '"GET /healthz HTTP/1.1" 200' not in output(proc)[1]:
        assert time.monotonic() < deadline, output(proc)[1]
        time.sleep(0.1)
    assert output(proc)[0] == ""  # stdout is for results: the server has none
