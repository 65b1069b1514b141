"""What a test sets and reads on a `HubServer`: faults, extra tree entries, counters.

`HubState` is the thread-safe part of the server the request handler consults (`take_fault`)
and reports to (`record`, `count_bytes`); tests use `set_fault`, `clear_faults`,
`add_extra_entry`, `reset` and the counters ``bytes_sent``, ``bytes_by_path``, ``requests``.
"""

from __future__ import annotations

import fnmatch
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

from .repos import MINILM

DEFAULT_EXTRA_CONTENT = b"this file must never be written outside the cache\n"


@dataclass
class Fault:
    """One injected fault; see the `support.hub` docstring."""

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


class HubState:
    """Faults, extra tree entries and counters, guarded by one lock."""

    def __init__(self, *, verbose: bool = False) -> None:
        self.verbose = verbose
        self._lock = threading.RLock()
        self.faults: list[Fault] = []
        #: repo id -> escaping/synthetic entries: a list of paths or a {path: content} mapping
        self.extra_tree_entries: dict[str, Sequence[str] | Mapping[str, bytes]] = {}
        self.bytes_sent = 0
        self.bytes_by_path: Counter[tuple[str, str]] = Counter()
        self.requests: list[RequestRecord] = []

    def reset(self) -> None:
        """Clear faults, extra entries and counters: the server as a new test finds it."""
        self.clear_faults()
        self.reset_stats()

    # -- extra tree entries ------------------------------------------------------------------

    def extra_entries(self, repo_id: str) -> dict[str, bytes]:
        """``repo_id``'s extra entries as {path: content}."""
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
        """Add a fault (see `Fault` and the `support.hub` docstring) and return it."""
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

    def faults_json(self) -> dict[str, Any]:
        """The faults and extra entries as JSON-able data (what ``GET /_faults`` returns)."""
        with self._lock:
            return {
                "faults": [f.to_json() for f in self.faults],
                "extra_tree_entries": {
                    repo: sorted(self.extra_entries(repo)) for repo in self.extra_tree_entries
                },
            }

    def take_fault(
        self, *, status_phase: bool, kind: str, method: str, repo_id: str | None, path: str | None
    ) -> Fault | None:
        """The handler's call: the first active fault for this request, one use of it consumed."""
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

    def record(self, record: RequestRecord) -> None:
        """The handler's call when it sends a status line."""
        with self._lock:
            self.requests.append(record)
        if self.verbose:
            print(f"hubserver: {record.method} {record.path} {record.range} -> {record.status}",
                  file=sys.stderr)  # fmt: skip

    def count_bytes(self, n: int, key: tuple[str, str] | None) -> None:
        """The handler's call as it hands body bytes (of ``key``'s file, if any) to the socket."""
        with self._lock:
            self.bytes_sent += n
            if key is not None:
                self.bytes_by_path[key] += n


def settle(state: HubState) -> None:
    """Wait until the byte counter stops moving: after a client is killed, the server thread
    of its connection may still push a chunk into the dead socket."""
    settled, last = 0, -1
    while settled < 3:
        time.sleep(0.2)
        settled, last = (settled + 1, last) if state.bytes_sent == last else (0, state.bytes_sent)


def resolve_gets(state: HubState, repo: str = MINILM) -> dict[str, int]:
    """Body bytes the server sent per file of ``repo``."""
    return {path: n for (r, path), n in state.bytes_by_path.items() if r == repo and n}
