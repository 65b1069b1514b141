"""Downloading one file into the Hugging Face cache, resumably.

huggingface_hub 2.x no longer resumes: each download writes a process-unique temporary file
that is deleted on failure and orphaned by a kill.  embctl keeps the cache layout and the lock
files huggingface_hub uses (so both can download into one cache at once) but writes
``blobs/<etag>.incomplete`` itself, resumes it with a Range request (huggingface_hub's
``http_get``), hashes it as it is written and checks the hash against its etag, and only
then renames it into place and links it from the snapshot.  A kill at any moment leaves at most an
``.incomplete`` file that the next pull continues.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path
from typing import BinaryIO

from embctl.errors import EmbctlError
from embctl.models.hashing import hash_kind


class HashingWriter:
    """A file wrapper that hashes what is written, so a download is checked without a second
    pass over the file.  Chunks are hashed on a thread of their own (hashlib releases the GIL),
    beside the network reads.  Bytes already on disk (a resumed download) are hashed first; if
    the server ignores the Range request, huggingface_hub seeks back and truncates, and the hash
    starts over from what is left."""

    def __init__(self, f: BinaryIO, kind: str | None, total: int, existing: int) -> None:
        self.f = f
        self.kind = kind
        self.total = total
        self.h = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._restart_at(existing)

    @staticmethod
    def _drain(chunks: queue.Queue, h) -> None:
        while (chunk := chunks.get()) is not None:
            h.update(chunk)

    def _stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)  # type: ignore[union-attr]
            self._thread.join()
            self._thread = self._queue = None

    def _restart_at(self, position: int) -> None:
        if self.kind is None:
            return
        self._stop()
        self.h = hashlib.sha256() if self.kind == "sha256" else hashlib.sha1()
        if self.kind == "git-sha1":
            self.h.update(f"blob {self.total}\0".encode())
        self.f.flush()
        with open(self.f.name, "rb") as r:
            remaining = position
            while remaining > 0 and (chunk := r.read(min(remaining, 4 << 20))):
                self.h.update(chunk)
                remaining -= len(chunk)
        self._queue = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._drain, args=(self._queue, self.h),
                                        daemon=True, name="embctl-hash")
        self._thread.start()

    def write(self, data: bytes) -> int:
        if self._queue is not None:
            self._queue.put(bytes(data))
        return self.f.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.f.seek(offset, whence)
        self._restart_at(position)
        return position

    def hexdigest(self) -> str | None:
        self._stop()
        return self.h.hexdigest() if self.h is not None else None

    def close_hasher(self) -> None:
        self._stop()

    def __getattr__(self, name: str):
        return getattr(self.f, name)


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


def fetch_file(repo_id: str, path: str, commit: str, cache_dir: Path, storage: Path,
               known: tuple[str | None, int] | None = None) -> int:
    """Download ``path`` of ``repo_id`` at ``commit`` into the cache. Returns bytes received.

    ``known`` is the (etag, size) the repo listing already gave: when the etag is a content
    hash, the per-file HEAD request is skipped (the download is checked against it anyway).
    """
    from filelock import FileLock

    from embctl.models.hub import import_hf

    hf = import_hf()
    from huggingface_hub.utils import build_hf_headers

    url = hf.hf_hub_url(repo_id, path, revision=commit)
    headers = build_hf_headers()
    if known and known[0] and hash_kind(known[0]):
        etag, size, location = known[0], known[1], url
    else:
        meta = hf.get_hf_file_metadata(url, headers=headers)
        if not meta.etag or meta.size is None:
            raise EmbctlError(f"{repo_id}: the server sent no ETag or size for {path}")
        etag, size, location = meta.etag, meta.size, meta.location
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
            if resume > size:
                resume = 0
                incomplete.unlink()
            kind = hash_kind(etag)
            with open(incomplete, "ab") as f:
                writer = HashingWriter(f, kind, size, resume)
                try:
                    hf.file_download.http_get(location, writer, resume_size=resume,
                                              headers=headers, expected_size=size,
                                              displayed_filename=path)
                finally:
                    writer.close_hasher()
            received = size - resume
            if kind is not None:
                actual = writer.hexdigest()
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
