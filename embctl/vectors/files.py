"""The vector cache's files: finding, sizing and removing them (each with its -wal and -shm).

Only the standard library is imported here: ``embctl ls``, ``du`` and ``rm`` use these.
"""

from __future__ import annotations

import os
from pathlib import Path

from embctl.paths import vectors_dir
from embctl.vectors.naming import SUFFIX


def store_files(root: Path | None = None) -> list[Path]:
    folder = root or vectors_dir()
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX) and p.is_file())
    except OSError:
        return []


def file_size(path: Path) -> int:
    """The cache file plus its WAL and shared-memory files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(f"{path}{suffix}").st_size
        except OSError:
            pass
    return total


def remove_files(path: Path) -> int:
    """Delete a cache file with its -wal and -shm; return the bytes freed."""
    freed = file_size(path)
    for suffix in ("-wal", "-shm", ""):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
    return freed
