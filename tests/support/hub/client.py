"""`HubServerClient`: control a `HubServer` running in another process (``python -m
support.hub``) through its ``/_stats`` and ``/_faults`` endpoints."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


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
