"""Downloading one file into the Hugging Face cache, resumably.

huggingface_hub 2.x no longer resumes: each download writes a process-unique temporary file
that is deleted on failure and orphaned by a kill.  embctl keeps the cache layout and the lock
files huggingface_hub uses (so both can download into one cache at once) but writes
``blobs/<etag>.incomplete`` itself, resumes it with a Range request (huggingface_hub's
``http_get``), hashes it as it is written and checks the hash against its etag, and only
then renames it into place and links it from the snapshot.  A kill at any moment leaves at most an
``.incomplete`` file that the next pull continues; Ctrl-C and SIGTERM stop a download within
a chunk (the ``stop`` event), leaving the same.  Nothing is written through a symbolic link
planted in the cache (:mod:`embctl.models.safefs`).
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
from embctl.models.safefs import check_file, lock_file, make_dirs, open_file
from embctl.models.workers import Stopped

STOP_CHUNK = 1 << 20


class HashingWriter:
    """A file wrapper that hashes what is written, so a download is checked without a second
    pass over the file.  Chunks are hashed on a thread of their own (hashlib releases the GIL),
    beside the network reads.  Bytes already on disk (a resumed download) are hashed first; if
    the server ignores the Range request, huggingface_hub seeks back and truncates, and the hash
    starts over from what is left.  ``written`` counts the bytes that arrived; when ``stop`` is
    set, the chunk in hand is written and `Stopped` raised."""

    def __init__(self, f: BinaryIO, kind: str | None, total: int, existing: int,
                 stop: threading.Event | None = None) -> None:
        self.f = f
        self.kind = kind
        self.total = total
        self.stop = stop
        self.written = 0
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
        offset = 0
        while offset < position and (
            chunk := os.pread(self.f.fileno(), min(position - offset, 4 << 20), offset)
        ):
            self.h.update(chunk)
            offset += len(chunk)
        self._queue = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._drain, args=(self._queue, self.h),
                                        daemon=True, name="embctl-hash")
        self._thread.start()

    def write(self, data: bytes) -> int:
        if self._queue is not None:
            self._queue.put(bytes(data))
        n = self.f.write(data)
        self.written += len(data)
        if self.stop is not None and self.stop.is_set():
            self.f.flush()
            raise Stopped()
        return n

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


def link_blob(blob: Path, pointer: Path, root: Path | None = None) -> None:
    """Point the snapshot entry at the blob with a relative symlink, atomically.  ``root``
    (the cache folder) is where the check for planted folder links starts."""
    make_dirs(root or blob.parent.parent.parent, pointer.parent)
    target = os.path.relpath(blob, pointer.parent)
    if pointer.is_symlink() and os.readlink(pointer) == target:
        return
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, pointer)  # replaces a link, never writes through one


def _acquire(lock, stop: threading.Event | None) -> None:
    """Take the per-blob lock, giving up when the pull is being stopped."""
    from filelock import Timeout

    while True:
        try:
            lock.acquire(timeout=0.25)
            return
        except Timeout:
            if stop is not None and stop.is_set():
                raise Stopped() from None


def _download_into(incomplete: Path, location: str, headers: dict, size: int, etag: str,
                   path: str, stop: threading.Event | None) -> tuple[int, str | None]:
    """Append the rest of the file to ``incomplete`` (opened without following a link).
    Returns the bytes that arrived and their hash (None when the etag is not a hash)."""
    from embctl.models.hub import import_hf

    hf = import_hf()
    # Chunks of 1 MiB rather than huggingface_hub's 10 MiB: a stop is noticed (and what
    # arrived is kept) within one chunk.  Only the granularity of its reads changes.
    hf.constants.DOWNLOAD_CHUNK_SIZE = min(hf.constants.DOWNLOAD_CHUNK_SIZE, STOP_CHUNK)
    fd = open_file(incomplete, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "ab") as f:
        resume = os.fstat(fd).st_size
        if resume > size:
            f.truncate(0)
            resume = 0
        kind = hash_kind(etag)
        writer = HashingWriter(f, kind, size, resume, stop=stop)
        try:
            hf.file_download.http_get(location, writer, resume_size=resume, headers=headers,
                                      expected_size=size, displayed_filename=path)
        finally:
            writer.close_hasher()
        os.fchmod(fd, 0o666 & ~_umask())
    return writer.written, writer.hexdigest() if kind is not None else None


def fetch_file(repo_id: str, path: str, commit: str, cache_dir: Path, storage: Path,
               known: tuple[str | None, int] | None = None,
               stop: threading.Event | None = None) -> int:
    """Download ``path`` of ``repo_id`` at ``commit`` into the cache.  Returns the bytes this
    process received: 0 when the blob was already there (another process fetched it while we
    waited for its lock), less than the size after a resume.

    ``known`` is the (etag, size) the repo listing already gave: when the etag is a content
    hash, the per-file HEAD request is skipped (the download is checked against it anyway).
    ``stop`` set makes the download end after the current chunk with `Stopped`, leaving the
    ``.incomplete`` file for the next pull.
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
    blobs = make_dirs(cache_dir, storage / "blobs")
    blob = blobs / etag
    pointer = storage / "snapshots" / commit / Path(*path.split("/"))
    lock = FileLock(lock_file(cache_dir, cache_dir / ".locks" / storage.name / f"{etag}.lock"))
    received = 0
    _acquire(lock, stop)
    try:
        if not check_file(blob).exists():
            incomplete = blobs / f"{etag}.incomplete"
            received, actual = _download_into(incomplete, location, headers, size, etag, path,
                                              stop)
            if actual is not None and actual != etag:
                incomplete.unlink(missing_ok=True)
                raise EmbctlError(
                    f"{repo_id}: {path} is corrupt after download (expected "
                    f"{hash_kind(etag)} {etag}, got {actual}); it was deleted, pull again"
                )
            os.replace(incomplete, blob)
        if stop is not None and stop.is_set():
            raise Stopped()  # the blob is kept; the stopped pull links nothing more
        link_blob(blob, pointer, cache_dir)
    finally:
        lock.release()
    return received
