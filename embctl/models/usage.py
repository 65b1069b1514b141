"""Disk usage of the model cache by category, each byte counted once.

A blob shared between revisions is stored once per repo already; a blob shared between repos
(hard links, or Xet's shared store linked into several repos) is counted once by inode.

Dataset and Space repos other tools downloaded into the same Hugging Face cache are not
models: their bytes (downloads in progress included) are counted apart, as ``other``, so
``models`` is what embctl manages and the lines still add up to the total on disk.
"""

from __future__ import annotations

from pathlib import Path

from embctl.models.scan import scan_cache


def model_usage(cache_dir: Path) -> dict[str, int]:
    """``{"models", "incomplete", "other"}`` bytes of the cache."""
    seen: set[tuple[int, int]] = set()
    models = incomplete = other = 0
    for repo in sorted(scan_cache(cache_dir), key=lambda r: r.repo_type != "model"):
        size = 0
        for blob in repo.blobs.values():
            if blob.inode not in seen:
                seen.add(blob.inode)
                size += blob.size
        if repo.repo_type == "model":
            models += size
            incomplete += repo.incomplete_size
        else:
            other += size + repo.incomplete_size
    return {"models": models, "incomplete": incomplete, "other": other}
