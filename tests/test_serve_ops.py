"""`embctl serve` in operation: SIGTERM drains a download in flight and exits 0 within 10 s,
a port in use is one line (exit 1), and ``--upstream`` fetches what the cache lacks through
from another Hub once, however many clients ask at the same time."""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.hub import MINILM
from support.hub.state import resolve_gets, settle
from support.runner import Embctl, one_line_error
from support.serve import output, serving, start_serve, stop

pytest.importorskip("uvicorn")


def snapshot(home: Embctl) -> Path:
    return home.repo_dir / "snapshots" / (home.repo_dir / "refs" / "main").read_text().strip()


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def request(url: str, method: str, path: str):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, data[:300]
        data += chunk
    return data


@pytest.mark.e2e
def test_sigterm_finishes_the_download_in_flight_and_exits_0(pulled: Embctl):
    weights = (snapshot(pulled) / "model.safetensors").read_bytes()
    proc, url = start_serve(pulled.env)
    parts = urlsplit(url)
    try:
        idle = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        idle.request("GET", "/healthz")  # a keep-alive connection left idle: no reason to wait
        assert idle.getresponse().read()
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # a slow reader
        slow.settimeout(30)
        slow.connect((parts.hostname, parts.port))
        slow.sendall(f"GET /{MINILM}/resolve/main/model.safetensors HTTP/1.1\r\nHost: x\r\n\r\n"
                     .encode())
        head, _, first = read_until(slow, b"\r\n\r\n").partition(b"\r\n\r\n")
        body = bytearray(first)
        assert head.startswith(b"HTTP/1.1 200")
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert proc.poll() is None  # still sending what was asked before SIGTERM
        while chunk := slow.recv(1 << 20):
            body += chunk
            if len(body) >= len(weights):
                break
        slow.close()
        assert len(body) == len(weights), output(proc)[1]
        assert hashlib.sha256(body).digest() == hashlib.sha256(weights).digest()
        assert proc.wait(timeout=15) == 0, output(proc)[1]
        assert time.monotonic() - signalled <= 10
    finally:
        stop(proc)


def test_a_port_in_use_is_one_line(embctl: Embctl):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = embctl("serve", "--port", str(port), timeout=60)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert str(port) in line and "in use" in line


@pytest.mark.e2e
def test_upstream_fetches_through_once_for_concurrent_requests(tmp_path: Path, hub):
    served = Embctl.at(tmp_path / "served", "http://127.0.0.1:9")  # empty; its own Hub: none
    # Slow the upstream's big file down so the requests below overlap the fetch.
    hub.set_fault(MINILM, "model.safetensors", delay_s=0.02, chunk_size=1 << 20)
    with serving(served.env, "--upstream", hub.url) as (proc, url):
        results: list[int] = []

        def ask() -> None:
            results.append(request(url, "GET", f"/api/models/{MINILM}/revision/main")[0])

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert results == [200] * 4
        clients = [Embctl.at(tmp_path / f"client{i}", url) for i in range(3)]
        pulls = [c.popen("pull", "all-MiniLM-L6-v2", "-q") for c in clients]
        for p in pulls:
            assert p.wait(300) == 0, p.stderr.read()
        source = snapshot(served)
        for client in clients:
            assert digests(snapshot(client)) == digests(source)
        sizes = {p: len(b) for p, b in ((p, (source / p).read_bytes())
                                         for p in digests(source))}
        assert resolve_gets(hub) == sizes  # each file crossed from upstream exactly once

        # A file the pull left out is fetched through when asked for, and served.
        onnx = (hub.repo_dir(MINILM) / "onnx" / "model.onnx").read_bytes()
        status, headers, body = request(url, "GET", f"/{MINILM}/resolve/main/onnx/model.onnx")
        assert status == 200 and body == onnx
        assert headers["etag"] == f'"{hashlib.sha256(onnx).hexdigest()}"'
        # What the upstream lacks is still the Hub's 404.
        for path, code in ((f"/{MINILM}/resolve/main/missing.json", "EntryNotFound"),
                           ("/nobody/nothing/resolve/main/config.json", "RepoNotFound"),
                           (f"/{MINILM}/resolve/nobranch/config.json", "RevisionNotFound")):
            status, headers, _ = request(url, "HEAD", path)
            assert (status, headers.get("x-error-code")) == (404, code), path
    assert f"fetching {MINILM}@main from {hub.url}" in output(proc)[1]


@pytest.mark.e2e
def test_upstream_unreachable_is_a_502(tmp_path: Path):
    served = Embctl.at(tmp_path / "served")
    with serving(served.env, "--upstream", "http://127.0.0.1:9") as (_, url):
        status, headers, _ = request(url, "GET", f"/api/models/{MINILM}")
        assert status == 502 and "127.0.0.1:9" in headers["x-error-message"]
        client = Embctl.at(tmp_path / "client", url)
        proc = client("pull", "all-MiniLM-L6-v2")
        assert proc.returncode == 1
        one_line_error(proc)


@pytest.mark.e2e
def test_sigterm_during_a_fetch_through_exits_0_within_10s(tmp_path: Path, hub):
    """A fetch from upstream outlasting SIGTERM's grace: the waiting request gets a 503, the
    server exits 0 within 10 s, and the partial download stays for the next fetch."""
    hub.set_fault(MINILM, "model.safetensors", delay_s=0.5, chunk_size=1 << 20)  # ~45 s
    served = Embctl.at(tmp_path / "served")
    proc, url = start_serve(served.env, "--upstream", hub.url)
    try:
        answers: list[int] = []
        waiting = threading.Thread(
            target=lambda: answers.append(request(url, "GET", f"/api/models/{MINILM}")[0]))
        waiting.start()
        deadline = time.monotonic() + 60
        while not list(served.repo_dir.glob("blobs/*.incomplete")):
            assert time.monotonic() < deadline, output(proc)[1]
            time.sleep(0.1)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, output(proc)[1]
        assert time.monotonic() - signalled <= 10
        waiting.join(30)
        assert answers == [503]
        assert list(served.repo_dir.glob("blobs/*.incomplete"))
        assert "Traceback" not in output(proc)[1]
    finally:
        stop(proc)
        # The hub's thread of the killed download may still push a chunk into the dead
        # socket: let it end here, not in the next test's byte counts.
        settle(hub)
