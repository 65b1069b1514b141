"""Sizes and use times of a store's files, for stores the core or plugins keep (a service
for ``Store`` implementations: what ``ls``/``du`` show, counted the same way everywhere)."""

from __future__ import annotations

from pathlib import Path


def files_size(paths: list[Path], *, follow_links: bool = True) -> int:
    """Bytes of the files that still exist (a file removed meanwhile counts 0)."""
    total = 0
    for p in paths:
        try:
            total += (p.stat() if follow_links else p.lstat()).st_size
        except OSError:
            pass
    return total


def last_used(paths: list[Path]) -> float | None:
    """The latest access or modification time among the files, or None when none exists."""
    times = []
    for p in paths:
        try:
            st = p.stat()
            times.append(max(st.st_atime, st.st_mtime))
        except OSError:
            pass
    return max(times) if times else None
