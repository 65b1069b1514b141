"""Naming in the vector cache: a namespace's canonical JSON, its id (the file name of its
cache) and path, and the key of each vector.

A *namespace* is everything that determines a vector besides the input itself: backend, repo
id, the resolved commit hash, and every option that changes the output (normalize, prefix,
truncated dims...).  Its canonical JSON is hashed into the file name, so a new model revision
or a new option writes to a new file and never serves stale vectors.

Within a file, the key of a vector is ``sha256(namespace id, 0x00, input bytes)``.

Only the standard library is imported here: ``embctl ls`` reads these files too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from embctl.paths import vectors_dir

SUFFIX = ".sqlite"


def canonical(namespace: dict[str, Any]) -> str:
    return json.dumps(namespace, sort_keys=True, separators=(",", ":"), default=str)


def namespace_id(namespace: dict[str, Any]) -> str:
    """A short stable id for a namespace: the file name of its cache."""
    return hashlib.sha256(canonical(namespace).encode()).hexdigest()[:32]


def store_path(namespace: dict[str, Any], root: Path | None = None) -> Path:
    return (root or vectors_dir()) / f"{namespace_id(namespace)}{SUFFIX}"


class KeyMaker:
    """Computes item keys: ``sha256(namespace id || 0x00 || input)``."""

    def __init__(self, ns_id: str) -> None:
        self._prefix = hashlib.sha256(ns_id.encode() + b"\x00")

    def __call__(self, data: bytes) -> bytes:
        h = self._prefix.copy()
        h.update(data)
        return h.digest()
