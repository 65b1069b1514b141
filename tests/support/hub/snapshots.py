"""The repos a `HubServer` serves, as the Hub protocol sees them: files, hashes, commits.

``root/<org>/<name>/`` is branch ``main`` of repo ``org/name``; ``root/<org>/<name>@<branch>/``
directories are further branches.  Each branch has one deterministic commit: the sha1 of its
sorted ``(path, size, sha256)`` listing.  A file is "in LFS" when it is larger than the LFS
threshold or has an extension in `LFS_EXTENSIONS`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .reply import Reply

DEFAULT_LFS_THRESHOLD = 10 * 1024
LFS_EXTENSIONS = frozenset(
    {
        ".safetensors", ".bin", ".onnx", ".h5", ".ot", ".msgpack", ".pt", ".pth", ".ckpt",
        ".gguf", ".pkl", ".npy", ".npz", ".tflite", ".pb", ".zip", ".gz", ".tar",
    }
)  # fmt: skip
MARKER_FILES = frozenset({".gated"})  #: never listed, never served
READ_CHUNK = 1024 * 1024

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob: ``sha1(b"blob <len>\\0" + data)``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The text of the git-lfs pointer file standing for a blob in git."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


@dataclass(frozen=True)
class RepoFileInfo:
    """One file of a repo snapshot, with the hashes the Hub protocol needs."""

    path: str
    size: int
    sha1: str  #: git blob sha1 of the content
    sha256: str
    lfs: bool
    source: Path | None = None  #: file on disk, or None for synthetic content
    content: bytes | None = None  #: synthetic content (extra tree entries)

    @property
    def etag(self) -> str:
        """The (unquoted) ETag: the sha256 for LFS files, the git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.sha1

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def oid(self) -> str:
        """The git object id shown in tree listings (that of the LFS pointer for LFS files)."""
        return git_blob_sha1(lfs_pointer(self.sha256, self.size)) if self.lfs else self.sha1

    def open(self) -> BinaryIO:
        if self.source is not None:
            return open(self.source, "rb")
        return io.BytesIO(self.content or b"")


@dataclass(frozen=True)
class RepoSnapshot:
    """The files of one branch of a repo, as served at one commit."""

    repo_id: str
    branch: str
    commit: str
    files: dict[str, RepoFileInfo]  #: sorted by path
    gated: str | None = None  #: "auto"/"manual" when the repo has a `.gated` marker

    @property
    def directories(self) -> list[str]:
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        dirs.discard("")
        return sorted(dirs)

    def tree_oid(self, directory: str) -> str:
        prefix = directory + "/"
        listing = "".join(f"{p}\0{f.oid}\n" for p, f in self.files.items() if p.startswith(prefix))
        return hashlib.sha1(listing.encode()).hexdigest()


class HashCache:
    """Caches (sha1, sha256) of files by (path, size, mtime, inode)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int, int, int], tuple[str, str]] = {}

    def hashes(self, path: Path, st: os.stat_result) -> tuple[str, str]:
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        sha1 = hashlib.sha1(b"blob %d\0" % st.st_size)
        sha256 = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(READ_CHUNK):
                sha1.update(chunk)
                sha256.update(chunk)
        result = (sha1.hexdigest(), sha256.hexdigest())
        with self._lock:
            self._cache[key] = result
        return result


def split_repo_id(repo_id: str) -> tuple[str, str]:
    """``(org, name)``; a `Reply` 404 ``RepoNotFound`` for anything that is not a repo id."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_SEGMENT_RE.match(p) and "@" not in p for p in parts):
        raise Reply(404, f"Repository {repo_id} not found", "RepoNotFound")
    return parts[0], parts[1]


def is_commit(revision: str) -> bool:
    return _COMMIT_RE.match(revision) is not None


def branches(root: Path, repo_id: str) -> dict[str, Path]:
    """Branch name -> directory, for an existing repo (``main`` first); {} if none."""
    org, name = split_repo_id(repo_id)
    main = root / org / name
    if not main.is_dir():
        return {}
    result = {"main": main}
    for candidate in sorted((root / org).glob(f"{name}@*")):
        branch = candidate.name[len(name) + 1 :]
        if candidate.is_dir() and branch:
            result[branch] = candidate
    return result


def is_lfs(path: str, size: int, lfs_threshold: int) -> bool:
    return size > lfs_threshold or os.path.splitext(path)[1].lower() in LFS_EXTENSIONS


def scan_branch(
    repo_id: str,
    branch: str,
    directory: Path,
    extra: Mapping[str, bytes],
    *,
    hashes: HashCache,
    lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
) -> RepoSnapshot:
    """The snapshot of ``directory``, plus the synthetic ``extra`` entries (path: content)."""
    files: dict[str, RepoFileInfo] = {}
    gated: str | None = None
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        base = Path(dirpath)
        rel_dir = base.relative_to(directory).as_posix()
        for filename in filenames:
            rel = filename if rel_dir == "." else f"{rel_dir}/{filename}"
            full = base / filename
            if rel in MARKER_FILES:
                if rel == ".gated":
                    text = full.read_text(errors="replace").strip()
                    gated = text if text in ("auto", "manual") else "manual"
                continue
            st = full.stat()
            sha1, sha256 = hashes.hashes(full, st)
            files[rel] = RepoFileInfo(
                path=rel,
                size=st.st_size,
                sha1=sha1,
                sha256=sha256,
                lfs=is_lfs(rel, st.st_size, lfs_threshold),
                source=full,
            )
    for path, content in extra.items():
        files[path] = RepoFileInfo(
            path=path,
            size=len(content),
            sha1=git_blob_sha1(content),
            sha256=hashlib.sha256(content).hexdigest(),
            lfs=is_lfs(path, len(content), lfs_threshold),
            content=content,
        )
    files = dict(sorted(files.items()))
    listing = "".join(f"{p}\0{f.size}\0{f.sha256}\n" for p, f in files.items())
    commit = hashlib.sha1(listing.encode()).hexdigest()
    return RepoSnapshot(repo_id, branch, commit, files, gated)
