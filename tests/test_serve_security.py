"""`embctl serve`'s security: nothing outside the cache is ever served (path traversal in every
spelling, sent as raw bytes on a socket so no client normalizes it; links planted in the cache
that leave it), and the bearer token (every route, huggingface_hub's HF_TOKEN, never printed,
required beyond loopback)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.hub import MINILM
from support.runner import Embctl, one_line_error
from support.serve import output, serving

pytest.importorskip("uvicorn")

SECRET = b"TOP-SECRET-6f1c2b"


def raw_get(url: str, target: str, headers: str = "") -> tuple[int, bytes]:
    """Send ``GET target`` exactly as written; (status, whole response)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
                     .encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def snapshot(home: Embctl) -> Path:
    return home.repo_dir / "snapshots" / (home.repo_dir / "refs" / "main").read_text().strip()


@pytest.fixture
def planted(pulled: Embctl, tmp_path: Path) -> Embctl:
    """The pulled cache with a secret beside it and links in it that lead out of it."""
    return plant(pulled, tmp_path)


def plant(pulled: Embctl, tmp_path: Path) -> Embctl:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (pulled.cache.parent / "secret.txt").write_bytes(SECRET)  # HF_HOME, just above the cache
    snap = snapshot(pulled)
    os.symlink(outside / "secret.txt", snap / "leak.txt")  # a file link leaving the cache
    os.symlink(outside, snap / "leakdir")  # a folder link leaving the cache
    os.symlink("../../../../secret.txt", snap / "relative-leak.txt")
    # A blob swapped for a link out of the cache: the snapshot entry still points at blobs/.
    blob = (snap / "tokenizer_config.json").resolve()
    (outside / "tokenizer_config.json").write_bytes(SECRET)
    blob.unlink()
    os.symlink(outside / "tokenizer_config.json", blob)
    return pulled


TRAVERSALS = [
    "/{repo}/resolve/main/../../../../secret.txt",
    "/{repo}/resolve/main/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "/{repo}/resolve/main/%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/{repo}/resolve/main/..%2F..%2F..%2F..%2F..%2Fsecret.txt",
    "/{repo}/resolve/main/..\\..\\..\\..\\secret.txt",
    "/{repo}/resolve/main/..%5C..%5C..%5C..%5Csecret.txt",
    "/{repo}/resolve/main//etc/passwd",
    "/{repo}/resolve/main/%2Fetc%2Fpasswd",
    "/{repo}/resolve/main/./config.json/../../../../../secret.txt",
    "/{repo}/resolve/%2e%2e%2f%2e%2e%2f%2e%2e/secret.txt",
    "/{repo}/resolve/..%2F..%2F..%2F..%2F/secret.txt",
    "/{repo}/resolve/main/leak.txt",
    "/{repo}/resolve/main/relative-leak.txt",
    "/{repo}/resolve/main/leakdir/secret.txt",
    "/{repo}/resolve/main/tokenizer_config.json",
    "/..%2F..%2F..%2F..%2Fsecret.txt/x/resolve/main/config.json",
    "/sentence-transformers/..%2F..%2F../resolve/main/secret.txt",
    "/api/models/{repo}/tree/main/..%2F..%2F..",
    "/api/models/{repo}/tree/main/leakdir",
    "/api/models/..%2F..%2F../x/tree/main",
    "/api/models/{repo}/revision/..%2F..%2F..%2Frefs%2Fmain",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/../../../../etc/passwd",
]


@pytest.mark.e2e
def test_nothing_outside_the_cache_is_served(planted: Embctl):
    with serving(planted.env) as (proc, url):
        for template in TRAVERSALS:
            target = template.format(repo=MINILM)
            status, response = raw_get(url, target)
            assert status in (400, 404), (target, status, response[:300])
            assert SECRET not in response and b"root:" not in response, target
        # The listing never shows what leaves the cache; the rest is still served.
        status, info = raw_get(url, f"/api/models/{MINILM}")
        assert status == 200
        for name in (b"leak.txt", b"leakdir", b"tokenizer_config.json"):
            assert name not in info
        assert raw_get(url, f"/{MINILM}/resolve/main/config.json")[0] == 200
        status, tree = raw_get(url, f"/api/models/{MINILM}/tree/main?recursive=true")
        assert status == 200 and b"leak" not in tree and SECRET not in tree
    assert proc.returncode == 0


@pytest.mark.e2e
def test_links_planted_while_serving_are_never_served(pulled: Embctl, tmp_path: Path):
    """The mirror keeps each snapshot's listing between requests: what changes in the cache
    afterwards (links planted, a blob swapped for a link, a file added or removed) is seen by
    the next request, never served from the kept listing."""
    targets = [t.format(repo=MINILM) for t in TRAVERSALS if "leak" in t or "tokenizer_c" in t]
    with serving(pulled.env) as (_, url):
        status, response = raw_get(url, f"/{MINILM}/resolve/main/tokenizer_config.json")
        assert status == 200 and SECRET not in response  # listed and kept
        assert raw_get(url, f"/api/models/{MINILM}/tree/main?recursive=true")[0] == 200
        plant(pulled, tmp_path)
        for target in targets:
            status, response = raw_get(url, target)
            assert status in (400, 404), (target, status, response[:300])
            assert SECRET not in response, target
        snap = snapshot(pulled)
        (snap / "1_Pooling" / "added.txt").write_bytes(b"new in a sub-folder")
        (snap / "modules.json").unlink()
        status, response = raw_get(url, f"/{MINILM}/resolve/main/1_Pooling/added.txt")
        assert status == 200 and response.endswith(b"new in a sub-folder")
        assert raw_get(url, f"/{MINILM}/resolve/main/modules.json")[0] == 404
        status, info = raw_get(url, f"/api/models/{MINILM}")
        assert b"1_Pooling/added.txt" in info and b"modules.json" not in info


@pytest.mark.e2e
def test_a_link_inside_the_cache_is_served(pulled: Embctl):
    """The rule is "inside the cache", not "no links": snapshot links into blobs/ are the
    cache's normal shape, and one that points at another blob of the cache is served."""
    snap = snapshot(pulled)
    os.symlink(os.readlink(snap / "config.json"), snap / "alias.json")
    with serving(pulled.env) as (_, url):
        status, response = raw_get(url, f"/{MINILM}/resolve/main/alias.json")
    assert status == 200 and response.endswith((snap / "config.json").read_bytes())


TOKEN = "s3cret-token-9d2e"


@pytest.mark.e2e
def test_the_token_guards_every_route_and_is_never_printed(pulled: Embctl, tmp_path: Path):
    with serving(pulled.env, "--token", TOKEN) as (proc, url):
        for target in ("/healthz", f"/api/models/{MINILM}",
                       f"/{MINILM}/resolve/main/config.json", "/v1/models", "/nothing"):
            assert raw_get(url, target)[0] == 401, target
            assert raw_get(url, target, "Authorization: Bearer wrong\r\n")[0] == 401, target
            assert raw_get(url, target, f"Authorization: Basic {TOKEN}\r\n")[0] == 401
        status, _ = raw_get(url, f"/{MINILM}/resolve/main/config.json",
                            f"Authorization: Bearer {TOKEN}\r\n")
        assert status == 200
        # huggingface_hub sends HF_TOKEN as the bearer token: embctl pull just works.
        client = Embctl.at(tmp_path / "client", url)
        refused = client("pull", "all-MiniLM-L6-v2")
        assert refused.returncode == 1 and TOKEN not in refused.stderr
        one_line_error(refused)
        wrong = client("pull", "all-MiniLM-L6-v2", env={"HF_TOKEN": "wrong"})
        assert wrong.returncode == 1
        ok = client("pull", "all-MiniLM-L6-v2", env={"HF_TOKEN": TOKEN})
        assert ok.returncode == 0, ok.stderr
        assert (client.repo_dir / "refs" / "main").is_file()
    stdout, stderr = output(proc)
    assert proc.returncode == 0
    assert TOKEN not in stdout + stderr
    assert " 401" in stderr  # the refusals were logged, without the token


@pytest.mark.e2e
def test_token_from_the_environment(pulled: Embctl):
    env = {**pulled.env, "EMBCTL_SERVE_TOKEN": TOKEN}
    with serving(env) as (proc, url):
        assert raw_get(url, "/healthz")[0] == 401
        assert raw_get(url, "/healthz", f"Authorization: Bearer {TOKEN}\r\n")[0] == 200
    assert TOKEN not in "".join(output(proc))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_beyond_loopback_without_a_token_refuses_to_start(embctl: Embctl, host: str):
    proc = embctl("serve", "--host", host, "--port", "0", timeout=60)
    assert proc.returncode == 2
    assert "--token" in one_line_error(proc)


def test_an_empty_token_is_refused(embctl: Embctl):
    proc = embctl("serve", "--port", "0", "--token", " ", timeout=60)
    assert proc.returncode == 2
    one_line_error(proc)


@pytest.mark.e2e
def test_a_corrupt_small_blob_is_not_served(pulled: Embctl):
    """A small file's ETag is computed from its bytes: a blob that no longer matches its
    name (its git sha1) is refused with a 500, never handed out under the Hub's hash."""
    blob = (snapshot(pulled) / "config.json").resolve()
    content = blob.read_bytes()
    blob.unlink()  # the pulled copy's blob: replace it, don't write through any link
    blob.write_bytes(content.replace(b"384", b"385"))
    with serving(pulled.env) as (proc, url):
        status, response = raw_get(url, f"/{MINILM}/resolve/main/config.json")
        assert status == 500 and b"385" not in response
        assert raw_get(url, f"/{MINILM}/resolve/main/modules.json")[0] == 200
    assert "embctl verify --repair" in output(proc)[1]


@pytest.mark.e2e
def test_plain_files_in_a_snapshot_get_the_hubs_hashes(pulled: Embctl):
    """A snapshot entry that is a file, not a link (a cache copied without links): its ETag
    is computed as the Hub's: git sha1 for a small file, sha256 for an LFS one."""
    import hashlib

    snap = snapshot(pulled)
    small, big = b"plain text\n", os.urandom(1 << 20)
    (snap / "notes.txt").write_bytes(small)
    (snap / "extra.safetensors").write_bytes(big)
    with serving(pulled.env) as (_, url):
        status, head = raw_get(url, f"/{MINILM}/resolve/main/notes.txt")
        sha1 = hashlib.sha1(b"blob %d\0" % len(small) + small).hexdigest()
        assert status == 200 and f'etag: "{sha1}"'.encode() in head.lower()
        status, head = raw_get(url, f"/{MINILM}/resolve/main/extra.safetensors")
        sha256 = hashlib.sha256(big).hexdigest()
        assert status == 200 and f'x-linked-etag: "{sha256}"'.encode() in head.lower()
        assert head.endswith(big)
