"""Downloading one file into the Hugging Face cache, resumably.

huggingface_hub 2.x no longer resumes: each download writes a process-unique temporary file
that is deleted on failure and orphaned by a kill.  embctl keeps the cache layout and the lock
files huggingface_hub uses (so both can download into one cache at once) but writes
``blobs/<etag>.incomplete`` itself, resumes it with a Range request (huggingface_hub's
``http_get``), checks the finished file's content hash against its etag, and only then renames
it into place and links it from the snapshot.  A kill at any moment leaves at most an
``.incomplete`` file that the next pull continues.
"""

from __future__ import annotations

import os
from pathlib import Path

from embctl.errors import EmbctlError
from embctl.models.hashing import hash_blob, hash_kind


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def link_blob(blob: Path, pointer: Path) -> None:
    """Point the snapshot entry at the blob with a relative symlink, atomically."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, pointer.parent)
    if pointer.is_symlink() and os.readlink(pointer) == target:
        return
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, pointer)


def fetch_file(repo_id: str, path: str, commit: str, cache_dir: Path, storage: Path) -> int:
    """Download ``path`` of ``repo_id`` at ``commit`` into the cache. Returns bytes received."""
    from filelock import FileLock

    from embctl.models.hub import import_hf

    hf = import_hf()
    from huggingface_hub.utils import build_hf_headers

    url = hf.hf_hub_url(repo_id, path, revision=commit)
    headers = build_hf_headers()
    meta = hf.get_hf_file_metadata(url, headers=headers)
    if not meta.etag or meta.size is None:
        raise EmbctlError(f"{repo_id}: the server sent no ETag or size for {path}")
    etag = meta.etag
    if "/" in etag or etag.startswith("."):
        raise EmbctlError(f"{repo_id}: the server sent an unusable ETag for {path}")
    blobs = storage / "blobs"
    blob = blobs / etag
    pointer = storage / "snapshots" / commit / Path(*path.split("/"))
    lock = cache_dir / ".locks" / storage.name / f"{etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    blobs.mkdir(parents=True, exist_ok=True)
    received = 0
    with FileLock(str(lock)):
        if not blob.exists():
            incomplete = blobs / f"{etag}.incomplete"
            resume = incomplete.stat().st_size if incomplete.exists() else 0
            if resume > meta.size:
                resume = 0
                incomplete.unlink()
            with open(incomplete, "ab") as f:
                hf.file_download.http_get(meta.location, f, resume_size=resume,
                                          headers=headers, expected_size=meta.size,
                                          displayed_filename=path)
            received = meta.size - resume
            kind = hash_kind(etag)
            if kind is not None:
                actual = hash_blob(incomplete, kind)
                if actual != etag:
                    incomplete.unlink(missing_ok=True)
                    raise EmbctlError(
                        f"{repo_id}: {path} is corrupt after download (expected {kind} {etag}, "
                        f"got {actual}); it was deleted, pull again"
                    )
            os.chmod(incomplete, 0o666 & ~_umask())
            os.replace(incomplete, blob)
        link_blob(blob, pointer)
    return received
