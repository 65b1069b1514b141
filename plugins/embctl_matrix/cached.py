"""A source's weight bytes from the Hugging Face cache, when the cache holds them.

A matrix pull needs one tensor of one safetensors file.  When the cache already holds that
file (the ``st`` backend pulled the model, or another commit shares its blob), the header and
the tensor are read from the blob: no byte of it goes over the network, and the pull works
offline from the cached revision.  The blob is first checked against its hash as before
computing vectors (``embctl.models.blobcheck``, remembered per blob): a blob that fails is
never read; online the Hub's bytes are range-read instead, offline the pull fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from embctl.plugin import EmbctlError, Listing, RemoteFile, cached_commit, repo_dir, warn
from embctl_matrix.matrices.format import FormatError, read_header_from
from embctl_matrix.matrices.writer import PendingFile
from embctl_matrix.remote import Counter, RemoteHeader

CHUNK = 8 << 20


def offline_listing(cache_dir: Path, repo_id: str, revision: str | None) -> Listing | None:
    """The cached revision of ``repo_id`` (a commit, or the commit a cached branch or tag
    points to) as a listing of its snapshot's files, or None when the cache has none."""
    storage = repo_dir(cache_dir, repo_id)
    commit = cached_commit(cache_dir, repo_id, revision)
    snapshot = storage / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        return None
    files: dict[str, RemoteFile] = {}
    for folder, _, names in os.walk(snapshot):
        for name in names:
            file = Path(folder) / name
            try:
                size = file.stat().st_size
            except OSError:
                continue  # a link to a missing blob: not in the cache
            etag = os.path.realpath(file).rsplit("/", 1)[-1] if file.is_symlink() else None
            path = file.relative_to(snapshot).as_posix()
            files[path] = RemoteFile(path, size, etag)
    return Listing(repo_id, commit, files)


class CachedWeights:
    """The weight files of one listing that the cache holds intact, looked up once each."""

    def __init__(self, ref: str, cache_dir: Path, listing: Listing) -> None:
        self.ref = ref
        self.listing = listing
        self.storage = repo_dir(cache_dir, listing.repo_id)
        self._found: dict[str, Path | None] = {}

    def file(self, path: str) -> Path | None:
        """The cached file with the listing's bytes for ``path``, hash checked; else None."""
        if path not in self._found:
            self._found[path] = self._lookup(path)
        return self._found[path]

    def _lookup(self, path: str) -> Path | None:
        want = self.listing.files.get(path)
        if want is None:
            return None
        candidates = [self.storage / "snapshots" / self.listing.commit / path]
        if want.etag:  # the same bytes under another commit: the blob is named by its hash
            candidates.append(self.storage / "blobs" / want.etag)
        failed = False
        for file in candidates:
            verdict = _intact(file, want)
            if verdict:
                return file
            failed = failed or verdict is False
        if failed:
            warn(f"{self.ref}: the cached {path} of {self.listing.repo_id} fails its hash; "
                 "not reading it (embctl verify --repair fixes the cache)")
        return None


def _intact(file: Path, want: RemoteFile) -> bool | None:
    """True: ``file`` holds ``want``'s bytes.  False: it is there but fails its hash.
    None: it is not there, or is another file (other size or name)."""
    from embctl.plugin import damaged, hash_blob, hash_kind

    try:
        if file.stat().st_size != want.size:
            return None
    except OSError:
        return None
    if file.is_symlink():
        blob = Path(os.path.realpath(file))
        if want.etag and blob.name != want.etag:
            return None  # another file at this path: the Hub's bytes are elsewhere
        return not damaged([file])  # the core's check, remembered per blob
    kind = hash_kind(want.etag or "")
    if kind is None:
        return True  # a plain file with nothing to check it against, as the core does
    try:
        return hash_blob(file, kind) == want.etag
    except OSError:
        return None


def read_header(ref: str, file: Path, path: str, counter: Counter) -> RemoteHeader:
    """The safetensors header of a cached file, as :func:`remote.read_header` gives it."""
    from embctl.plugin import open_noatime

    try:
        with open_noatime(file) as f:
            header, offset = read_header_from(f)
    except FormatError as exc:
        raise EmbctlError(f"{ref}: {path} is not a valid safetensors file ({exc})") from None
    counter.cache_bytes += offset
    return RemoteHeader(path, header, offset, file.stat().st_size)


def copy_range(ref: str, file: Path, start: int, sink: PendingFile, counter: Counter,
               on_progress: Callable[[int], None] = lambda n: None) -> None:
    """Append ``file``'s bytes ``start + sink.have .. start + sink.size`` to ``sink``
    (read without moving the blob's atime: this is no use of the model that pulled it)."""
    from embctl.plugin import open_noatime

    with open_noatime(file) as f:
        f.seek(start + sink.have)
        while sink.have < sink.size:
            buf = f.read(min(CHUNK, sink.size - sink.have))
            if not buf:
                raise EmbctlError(f"{ref}: the cached {file.name} ended early")
            sink.write(buf)
            counter.cache_bytes += len(buf)
            on_progress(len(buf))
