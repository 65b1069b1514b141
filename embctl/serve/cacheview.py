"""What the mirror serves: repos, revisions and files of the HF cache, as the Hub would name them.

The cache is read, never written (fetch-through writes with the core's pull, not here).  The
one safety rule: a file is served only if it is a regular file whose real path lies inside the
cache folder.  Snapshot entries are walked from ``snapshots/<commit>/`` (no ``..``, no path
from the request ever touches the file system: a request names an entry of this walk, or
nothing); a link that leaves the cache, a broken link, a folder link, a FIFO are left out of
the listing as if they were not there.

Hashes, as the Hub gives them:

- an LFS file's ETag is its sha256: the blob's name in the cache (``blobs/<sha256>``);
- a small file's ETag is its git blob sha1, ``sha1(b"blob <size>\\0" + content)``: computed
  from the bytes (the blob name is the Hub's claim, not the content's), memoized per
  (device, inode, size, mtime).  A 40-hex blob name that disagrees is a corrupt blob: it is
  listed, but serving it fails (`CachedFile.corrupt`), rather than handing out wrong bytes;
- a tree entry's ``oid`` for an LFS file is the git sha1 of its LFS pointer text.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

from embctl.models.hashing import git_sha1_file, hash_kind, sha256_file, stored_in_lfs
from embctl.models.hub import is_commit, is_safe_repo_path

#: One part of a repo id, as the Hub allows it (``--`` would make the cache folder ambiguous).
_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$")
#: What `embctl.models.download.link_blob` leaves while it swaps a link in.
_TMP_LINK = re.compile(r"^\..+\.\d+\.tmp$")


class NotOnMirror(Exception):
    """A 404 with the Hub's error code: RepoNotFound, RevisionNotFound or EntryNotFound."""

    def __init__(self, code: str, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.commit = commit


def valid_repo_id(repo_id: str) -> bool:
    parts = repo_id.split("/")
    return 1 <= len(parts) <= 2 and all(_PART.match(p) and "--" not in p and ".." not in p
                                        for p in parts)


def valid_revision(revision: str) -> bool:
    """A branch, tag (``refs/pr/1`` included) or commit: a relative path without odd parts."""
    return is_safe_repo_path(revision) and len(revision) <= 256


def lfs_pointer_oid(sha256: str, size: int) -> str:
    """The git object id of an LFS file's pointer: the ``oid`` the Hub lists for it."""
    import hashlib

    text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class CachedFile:
    path: str  #: repo-relative, '/'-separated
    real: str  #: the regular file inside the cache to read
    size: int
    etag: str  #: sha256 (LFS) or git blob sha1
    lfs: bool
    corrupt: bool = False  #: a 40-hex blob name the content does not hash to
    st: os.stat_result | None = field(default=None, compare=False, repr=False)

    @property
    def oid(self) -> str:
        return lfs_pointer_oid(self.etag, self.size) if self.lfs else self.etag


@dataclass(frozen=True)
class Snapshot:
    repo_id: str
    commit: str
    files: dict[str, CachedFile]

    @property
    def directories(self) -> list[str]:
        dirs = {p.rsplit("/", 1)[0] for p in self.files if "/" in p}
        for d in list(dirs):
            while "/" in d:
                d = d.rsplit("/", 1)[0]
                dirs.add(d)
        return sorted(dirs)


class CacheView:
    """The cache folder seen as a Hub: thread-safe, hashes memoized for the process."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self._memo: dict[tuple, str] = {}
        #: (repo, commit) -> (snapshot folder, its folders' stamps, the listing)
        self._listings: dict[tuple[str, str], tuple[str, tuple, Snapshot]] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> str:
        """The cache's real path (the cache folder itself may be a link, e.g. to another disk)."""
        return os.path.realpath(self.cache_dir)

    def inside(self, real: str) -> bool:
        root = self.root
        return real.startswith(root.rstrip(os.sep) + os.sep)

    def storage(self, repo_id: str) -> Path:
        from embctl.paths import repo_folder_name

        return self.cache_dir / repo_folder_name(repo_id)

    def has_repo(self, repo_id: str) -> bool:
        folder = self.storage(repo_id)
        return os.path.isdir(folder) and os.path.isdir(folder / "snapshots") and \
            self.inside(os.path.realpath(folder))

    def repo_ids(self) -> list[str]:
        """The model repos the cache holds (``models--org--name`` folders with a
        ``snapshots`` folder, inside the cache), by id, any case together."""
        try:
            names = os.listdir(self.cache_dir)
        except OSError:
            return []
        found = []
        for name in names:
            if not name.startswith("models--"):
                continue
            # A part never holds "--" (valid_repo_id): the split is unambiguous.
            repo_id = "/".join(name[len("models--"):].split("--"))
            if valid_repo_id(repo_id) and self.has_repo(repo_id):
                found.append(repo_id)
        return sorted(found, key=lambda r: (r.lower(), r))

    def head(self, repo_id: str) -> str | None:
        """The commit a listing shows for a repo: ``main``'s, else the first ref's, else the
        newest snapshot's (a repo pulled by commit only); None when it has no snapshot."""
        try:
            return self.resolve(repo_id, "main")
        except NotOnMirror:
            pass
        refs = self.refs(repo_id)
        if refs:
            return next(iter(refs.values()))
        storage = self.storage(repo_id)
        try:
            commits = [c for c in os.listdir(storage / "snapshots") if is_commit(c)]
        except OSError:
            return None
        dated = []
        for commit in commits:
            folder = self._snapshot_dir(storage, commit)
            stamp = _stamp(folder) if folder is not None else None
            if stamp is not None:
                dated.append((stamp[3], commit))
        return max(dated)[1] if dated else None

    def resolve(self, repo_id: str, revision: str) -> str:
        """The commit ``revision`` (branch, tag, commit) names in the cache, or `NotOnMirror`."""
        if not valid_repo_id(repo_id) or not self.has_repo(repo_id):
            raise NotOnMirror("RepoNotFound", f"Repository {repo_id} is not on this mirror")
        storage = self.storage(repo_id)
        commit = revision if is_commit(revision) else self._read_ref(storage, revision)
        if commit and self._snapshot_dir(storage, commit) is not None:
            return commit
        raise NotOnMirror("RevisionNotFound",
                          f"Revision {revision} of {repo_id} is not on this mirror")

    def refs(self, repo_id: str) -> dict[str, str]:
        """Branch and tag names -> commits, from ``refs/`` (``refs/pr/N`` included)."""
        storage = self.storage(repo_id)
        found: dict[str, str] = {}
        top = storage / "refs"
        for folder, _dirs, names in os.walk(top):
            for name in names:
                ref = os.path.relpath(os.path.join(folder, name), top).replace(os.sep, "/")
                commit = self._read_ref(storage, ref)
                if commit and self._snapshot_dir(storage, commit) is not None:
                    found[ref] = commit
        return dict(sorted(found.items()))

    def _read_ref(self, storage: Path, name: str) -> str | None:
        if not valid_revision(name):
            return None
        path = storage / "refs" / Path(*name.split("/"))
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):  # a planted link is no ref
                return None
            value = path.read_text(errors="replace").strip()
        except OSError:
            return None
        return value if is_commit(value) else None

    def _snapshot_dir(self, storage: Path, commit: str) -> str | None:
        folder = storage / "snapshots" / commit
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                return None
        except OSError:
            return None
        real = os.path.realpath(folder)
        return real if self.inside(real) else None

    def snapshot(self, repo_id: str, commit: str) -> Snapshot:
        """Every servable file of the commit's snapshot (call it off the event loop: it may
        hash small files the first time).

        The listing is kept while none of the snapshot's folders changed (inode, mtime,
        ctime): adding, removing, renaming or re-pointing an entry changes its folder.  A
        blob replaced or modified behind an unchanged link is caught when it is served
        (:meth:`unchanged`).  A pull asks for the listing once per request: walking it each
        time cost ~2.5 ms a request."""
        top = self._snapshot_dir(self.storage(repo_id), commit)
        if top is None:
            return Snapshot(repo_id, commit, {})
        known = self.kept(repo_id, commit, top)
        if known is not None:
            return known
        files: dict[str, CachedFile] = {}
        folders: list[tuple[str, tuple | None]] = []
        self._walk(top, "", files, folders)
        snap = Snapshot(repo_id, commit, dict(sorted(files.items())))
        with self._lock:
            self._listings[(repo_id, commit)] = (top, tuple(folders), snap)
        return snap

    def kept(self, repo_id: str, commit: str, top: str | None = None) -> Snapshot | None:
        """The kept listing when none of its folders changed (a few ``lstat`` calls: cheap
        enough for the event loop), else None."""
        if top is None:
            top = self._snapshot_dir(self.storage(repo_id), commit)
        with self._lock:
            known = self._listings.get((repo_id, commit))
        if known is None or known[0] != top or any(
                _stamp(folder) != stamp for folder, stamp in known[1]):
            return None
        return known[2]

    def forget(self, repo_id: str, commit: str) -> None:
        """Drop the kept listing: the next :meth:`snapshot` walks the folder again."""
        with self._lock:
            self._listings.pop((repo_id, commit), None)

    @staticmethod
    def unchanged(found: CachedFile) -> bool:
        """True while ``found.real`` is still the regular file the listing saw (same inode,
        size and mtime; ``lstat``: a blob swapped for a link is not)."""
        try:
            st = os.lstat(found.real)
        except OSError:
            return False
        seen = found.st
        return seen is not None and stat.S_ISREG(st.st_mode) and \
            (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == \
            (seen.st_dev, seen.st_ino, seen.st_size, seen.st_mtime_ns)

    def _walk(self, folder: str, rel: str, files: dict[str, CachedFile],
              folders: list[tuple[str, tuple | None]]) -> None:
        folders.append((folder, _stamp(folder)))  # before reading it: a later change shows
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if _TMP_LINK.match(entry.name):
                continue
            path = rel + entry.name
            if not is_safe_repo_path(path):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):  # folder links are never followed
                    self._walk(entry.path, path + "/", files, folders)
                    continue
                found = self._file(entry.path, path, entry.is_symlink())
            except OSError:
                continue
            if found is not None:
                files[path] = found

    def _file(self, link: str, path: str, is_link: bool) -> CachedFile | None:
        real = os.path.realpath(link)
        if not self.inside(real):
            return None
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):
            return None
        name = os.path.basename(real)
        if is_link and hash_kind(name) == "sha256":
            return CachedFile(path, real, st.st_size, name, True, st=st)
        if not is_link and stored_in_lfs(path, st.st_size):
            return CachedFile(path, real, st.st_size, self._hash(real, st, "sha256"), True, st=st)
        sha1 = self._hash(real, st, "git-sha1")
        corrupt = is_link and hash_kind(name) == "git-sha1" and name != sha1
        return CachedFile(path, real, st.st_size, sha1, False, corrupt, st=st)

    def _hash(self, real: str, st: os.stat_result, kind: str) -> str:
        key = (kind, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._memo.get(key)
        if known is None:
            known = sha256_file(real) if kind == "sha256" else git_sha1_file(real)
            with self._lock:
                self._memo[key] = known
        return known


def _stamp(folder: str) -> tuple | None:
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    return (st.st_mode, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
