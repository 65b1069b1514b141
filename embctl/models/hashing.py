"""Content hashes of cache blobs, streamed so multi-GB files never sit in memory.

A blob is named by the Hub's etag for it: 64 hex digits are the sha256 of an LFS file, 40 hex
digits the git blob sha1 (``sha1(b"blob <len>\\0" + content)``) of a small file.
Hashing is never a use of the model: files are read without moving their atime
(``embctl.noatime``), so ``verify`` does not make every model look recently used.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from embctl.noatime import open_noatime

CHUNK = 4 * 1024 * 1024
LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".h5", ".ot", ".msgpack", ".pt", ".pth",
                ".ckpt", ".npy", ".gguf")
LFS_MIN_SIZE = 10 * 1024 * 1024


def sha256_file(path: str | os.PathLike[str]) -> str:
    with open_noatime(path) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def git_sha1_file(path: str | os.PathLike[str]) -> str:
    with open_noatime(path) as f:
        h = hashlib.sha1(f"blob {os.fstat(f.fileno()).st_size}\0".encode())
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_kind(blob_name: str) -> str | None:
    """'sha256', 'git-sha1', or None when the name is not a content hash we can check."""
    if not all(c in "0123456789abcdef" for c in blob_name):
        return None
    return {64: "sha256", 40: "git-sha1"}.get(len(blob_name))


def hash_blob(path: str | os.PathLike[str], kind: str) -> str:
    return sha256_file(path) if kind == "sha256" else git_sha1_file(path)


def stored_in_lfs(filename: str, size: int) -> bool:
    """Whether the Hub would (most likely) keep this file in LFS, so name its blob by sha256."""
    return filename.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def blob_name_for(filename: str, path: Path, size: int) -> str:
    """The name the Hub would give this file's blob: sha256 for LFS files, else git sha1."""
    if stored_in_lfs(filename, size):
        return sha256_file(path)
    return git_sha1_file(path)
