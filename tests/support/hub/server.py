"""`HubServer`: the server's lifecycle and the repos it serves; see the `support.hub` docstring."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

from ..servers import ServerThreads
from .handler import Handler
from .reply import Reply
from .snapshots import (
    DEFAULT_LFS_THRESHOLD,
    HashCache,
    RepoSnapshot,
    branches,
    is_commit,
    scan_branch,
    split_repo_id,
)
from .state import HubState


class HubServer(HubState):
    """A Hub-compatible HTTP server for the repos under ``root``; see the `support.hub` docstring.

    Use as a context manager (``with HubServer(root) as hub: ...``) or call `start` / `stop`.
    Faults, extra entries and counters are those of `HubState`.
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
        super().__init__(verbose=verbose)
        self.root = Path(root)
        self.host = host
        self.lfs_threshold = lfs_threshold
        self.page_size = page_size
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._hashes = HashCache()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Start serving in a background thread.

        After a `stop`, `start` binds the same port again, so a test can take the Hub "down"
        and bring it back at the same URL.
        """
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self._requested_port), self)
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
        org, name = split_repo_id(repo_id)
        return self.root / org / (name if branch == "main" else f"{name}@{branch}")

    def branches(self, repo_id: str) -> dict[str, Path]:
        """Branch name -> directory, for an existing repo (``main`` first); {} if none."""
        return branches(self.root, repo_id)

    def snapshot(self, repo_id: str, revision: str = "main") -> RepoSnapshot:
        """The repo at a branch name or commit sha; raises `Reply` (404) if there is none."""
        found = self.branches(repo_id)
        if not found:
            raise Reply(404, f"Repository {repo_id} not found", "RepoNotFound")
        if revision in found:
            return self._scan(repo_id, revision, found[revision])
        if is_commit(revision):
            for branch, directory in found.items():
                snap = self._scan(repo_id, branch, directory)
                if snap.commit == revision:
                    return snap
        raise Reply(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def commit_sha(self, repo_id: str, revision: str = "main") -> str:
        """The commit sha the server gives ``revision`` of ``repo_id``."""
        return self.snapshot(repo_id, revision).commit

    def _scan(self, repo_id: str, branch: str, directory: Path) -> RepoSnapshot:
        extra = self.extra_entries(repo_id)
        return scan_branch(
            repo_id, branch, directory, extra, hashes=self._hashes, lfs_threshold=self.lfs_threshold
        )


class _HTTPServer(ServerThreads):
    """A threading server that knows its `HubServer` and can cut its open connections."""

    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], hub: HubServer) -> None:
        super().__init__(address, Handler)
        self.hub = hub
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


