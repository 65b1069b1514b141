"""The HTTP request handler of `HubServer`: routing, file transfers with their faults, and the
control endpoints (``/_stats``, ``/_faults``).  The API bodies come from `support.hub.api`."""

from __future__ import annotations

import json
import re
import socket
import time
import traceback
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from . import api
from .reply import Reply
from .snapshots import READ_CHUNK, RepoFileInfo
from .state import Fault, RequestRecord

if TYPE_CHECKING:
    from .server import HubServer

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) for a single-range header; None to ignore it; raises on 416."""
    match = _RANGE_RE.match(header.strip().replace(" ", ""))
    if match is None:
        return None  # multi-range or garbage: ignore the header, serve the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise Reply(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
        return max(size - length, 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignore it
    end = int(last) if last else size - 1
    if start >= size:
        raise Reply(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubserver/1.0"
    timeout = 120  # seconds an idle keep-alive connection is kept
    # Per-request state, reset by _dispatch (defaults cover errors raised before it runs).
    _control = True
    _decoded_path = ""
    _started = False

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every small response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # requests are recorded (and printed when verbose) by HubState.record

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        self._started = True
        if not self._control:
            self.hub.record(
                RequestRecord(self.command, self._decoded_path, self.headers.get("Range"), code)
            )

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self._decoded_path = unquote(split.path)
        self._control = split.path.startswith("/_")
        self._started = False
        self._query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(length) if length > 0 else b""
        try:
            self._route(method, split.path)
        except Reply as reply:
            self._send_error(reply)
        except OSError as exc:  # the client went away, the server is stopping, a file vanished...
            self.close_connection = True
            if not self._started:
                self._send_error(Reply(500, f"hubserver: {exc!r}"))
        except Exception as exc:  # a bug in the fixture: answer 500, keep serving
            traceback.print_exc()
            if self._started:  # too late for an error response
                self.close_connection = True
            else:
                self._send_error(Reply(500, f"hubserver internal error: {exc!r}"))

    def _route(self, method: str, raw_path: str) -> None:
        segs = raw_path.split("/")[1:]
        if self._control:
            return self._route_control(method, segs)
        if segs == ["api", "agent-harnesses"] and method in ("GET", "HEAD"):
            # Fetched by huggingface_hub's agent detection (telemetry); an empty registry.
            return self._send_json({"standardEnvVars": [], "harnesses": {}})
        if len(segs) >= 4 and segs[0] == "api" and segs[1] == "models":
            repo_id = f"{unquote(segs[2])}/{unquote(segs[3])}"
            self._apply_status_fault("api", method, repo_id, self._decoded_path)
            return self._route_api("GET" if method == "HEAD" else method, repo_id, segs[4:])
        if len(segs) >= 5 and segs[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = f"{unquote(segs[0])}/{unquote(segs[1])}"
            path = unquote("/".join(segs[4:]))
            self._apply_status_fault("resolve", method, repo_id, path)
            return self._resolve(method, repo_id, unquote(segs[3]), path)
        raise Reply(404, f"Not found: {method} {self._decoded_path}")

    def _route_api(self, method: str, repo_id: str, rest: list[str]) -> None:
        """``/api/models/{repo}/...``; a HEAD gets the GET's answer without the body."""
        hub = self.hub
        if method == "GET" and not rest:
            return self._send_json(api.model_info(hub.snapshot(repo_id), self._query))
        if method == "GET" and len(rest) == 2 and rest[0] == "revision":
            snap = hub.snapshot(repo_id, unquote(rest[1]))
            return self._send_json(api.model_info(snap, self._query))
        if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
            revision = unquote(rest[1])
            path = unquote("/".join(rest[2:])).strip("/")
            entries = api.tree(hub.snapshot(repo_id, revision), revision, path, self._query)
            return self._send_page(entries)
        if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
            snap = hub.snapshot(repo_id, unquote(rest[1]))
            content_type = self.headers.get("Content-Type", "")
            return self._send_json(api.paths_info(snap, self._body, content_type))
        if method == "GET" and rest == ["refs"]:
            hub.snapshot(repo_id)  # RepoNotFound if it does not exist
            commits = {b: hub.commit_sha(repo_id, b) for b in hub.branches(repo_id)}
            return self._send_json(api.refs(commits))
        if method == "GET" and len(rest) == 2 and rest[0] == "commits":
            return self._send_json(api.commits(hub.snapshot(repo_id, unquote(rest[1]))))
        raise Reply(404, f"Not found: {method} {self._decoded_path}")

    def _apply_status_fault(self, kind: str, method: str, repo_id: str, path: str) -> None:
        fault = self.hub.take_fault(
            status_phase=True, kind=kind, method=method, repo_id=repo_id, path=path
        )
        if fault is None:
            return
        assert fault.status is not None
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        raise Reply(fault.status, f"Injected fault: HTTP {fault.status}", fault.error_code, headers)

    # -- responses ---------------------------------------------------------------------------

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            if not self._control:
                self.hub.count_bytes(len(body), None)
            self.wfile.write(body)

    def _send_json(self, data: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self._send_bytes(200, body, "application/json; charset=utf-8", headers)

    def _send_page(self, entries: list[dict[str, Any]]) -> None:
        """One page of a tree listing, with a ``Link: <...>; rel="next"`` header if more."""
        expand = api.truthy(api.first(self._query, "expand"))
        page_size = min(50, self.hub.page_size) if expand else self.hub.page_size
        start = int(api.first(self._query, "cursor") or 0)
        headers: dict[str, str] = {}
        if start + page_size < len(entries):
            query = {k: v[-1] for k, v in self._query.items() if k != "cursor"}
            query["cursor"] = str(start + page_size)
            host = self.headers.get("Host") or f"{self.hub.host}:{self.hub.port}"
            base = urlsplit(self.path).path
            headers["Link"] = f'<http://{host}{base}?{urlencode(query)}>; rel="next"'
        self._send_json(entries[start : start + page_size], headers)

    def _send_error(self, reply: Reply) -> None:
        headers = dict(reply.headers)
        if reply.error_code:
            headers["X-Error-Code"] = reply.error_code
        headers["X-Error-Message"] = reply.message
        body = json.dumps({"error": reply.message}).encode()
        try:
            self._send_bytes(reply.status, body, "application/json; charset=utf-8", headers)
        except OSError:
            self.close_connection = True

    # -- files -------------------------------------------------------------------------------

    def _resolve(self, method: str, repo_id: str, revision: str, path: str) -> None:
        snap = self.hub.snapshot(repo_id, revision)
        if snap.gated is not None:
            authed = "authorization" in (k.lower() for k in self.headers.keys())
            raise Reply(
                403 if authed else 401,
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
                "GatedRepo",
            )
        info = snap.files.get(path)
        if info is None:
            raise Reply(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": snap.commit})
        fault = None
        if method == "GET":
            fault = self.hub.take_fault(
                status_phase=False, kind="resolve", method=method, repo_id=repo_id, path=path
            )
        size = info.size
        byte_range = None
        range_header = self.headers.get("Range")
        if range_header and not (fault is not None and fault.ignore_range):
            try:
                byte_range = parse_range(range_header, size)
            except Reply as reply:
                reply.headers["X-Repo-Commit"] = snap.commit
                raise
        start, end = byte_range if byte_range is not None else (0, size - 1)
        length = end - start + 1 if size else 0

        self.send_response(206 if byte_range is not None else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{info.etag}"')
        self.send_header("X-Repo-Commit", snap.commit)
        if info.lfs:
            self.send_header("X-Linked-Etag", f'"{info.sha256}"')
            self.send_header("X-Linked-Size", str(size))
        if byte_range is not None:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Disposition", f'inline; filename="{path.rsplit("/", 1)[-1]}"')
        self.end_headers()
        if method == "HEAD" or length == 0:
            return
        self._stream(info, repo_id, start, length, fault)

    def _stream(
        self, info: RepoFileInfo, repo_id: str, start: int, length: int, fault: Fault | None
    ) -> None:
        key = (repo_id, info.path)
        limit = length
        chunk_size = READ_CHUNK
        delay = 0.0
        corrupt_at: int | None = None
        if fault is not None:
            if fault.drop_after is not None:
                limit = min(length, max(fault.drop_after, 0))
            if fault.delay_s > 0:
                delay = fault.delay_s
                chunk_size = fault.chunk_size
            if fault.corrupt:
                corrupt_at = (
                    fault.corrupt_offset if fault.corrupt_offset is not None else info.size // 2
                )
        sent = 0
        with info.open() as fh:
            fh.seek(start)
            while sent < limit:
                chunk = fh.read(min(chunk_size, limit - sent))
                if not chunk:
                    break
                offset = start + sent
                if corrupt_at is not None and offset <= corrupt_at < offset + len(chunk):
                    mutable = bytearray(chunk)
                    mutable[corrupt_at - offset] ^= 0xFF
                    chunk = bytes(mutable)
                if delay:
                    time.sleep(delay)
                self.hub.count_bytes(len(chunk), key)
                self.wfile.write(chunk)
                sent += len(chunk)
        if sent < length:  # drop_after (or the file shrank): cut the connection mid-body
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True

    # -- control -----------------------------------------------------------------------------

    def _route_control(self, method: str, segs: list[str]) -> None:
        hub = self.hub
        if segs == ["_stats"] and method == "GET":
            return self._send_json(hub.stats())
        if segs == ["_stats", "reset"] and method == "POST":
            hub.reset_stats()
            return self._send_json({"ok": True})
        if segs == ["_faults"] and method in ("GET", "POST"):
            if method == "POST":
                try:
                    self._apply_control(json.loads(self._body or b"{}"))
                except (ValueError, TypeError) as exc:
                    raise Reply(400, f"bad /_faults body: {exc}") from exc
            return self._send_json(hub.faults_json())
        raise Reply(404, f"Not found: {method} {self._decoded_path}")

    def _apply_control(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        hub = self.hub
        faults = [Fault.from_json(f) for f in body.get("faults", [])]
        if body.get("clear"):
            hub.clear_faults()
        for fault in faults:
            hub.add_fault(fault)
        for repo, entries in (body.get("extra_tree_entries") or {}).items():
            if isinstance(entries, dict):
                for path, text in entries.items():
                    hub.add_extra_entry(repo, path, str(text).encode())
            else:
                for path in entries:
                    hub.add_extra_entry(repo, path)
