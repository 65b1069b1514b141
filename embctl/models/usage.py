"""Disk usage by category, each byte counted once.

A blob shared between revisions is stored once per repo already; a blob shared between repos
(hard links, or Xet's shared store linked into several repos) is counted once by inode.
"""

from __future__ import annotations

from pathlib import Path

from embctl.models.scan import scan_cache


def disk_usage(cache_dir: Path) -> dict[str, int]:
    from embctl.inventory import matrix_entries, vector_entries

    seen: set[tuple[int, int]] = set()
    models = incomplete = 0
    for repo in scan_cache(cache_dir):
        for blob in repo.blobs.values():
            if blob.inode not in seen:
                seen.add(blob.inode)
                models += blob.size
        incomplete += repo.incomplete_size
    vectors = sum(e.size_bytes for e in vector_entries())
    matrices = sum(e.size_bytes for e in matrix_entries())
    return {
        "models": models,
        "vectors": vectors,
        "matrices": matrices,
        "incomplete": incomplete,
        "total": models + vectors + matrices + incomplete,
    }
