"""A fast scan of the Hugging Face cache: repos, revisions, files and blobs.

huggingface_hub's ``scan_cache_dir`` stats every file through pathlib and needs the library
imported (about 0.4 s for ``hf cache ls`` on an empty cache).  This scan reads the same layout
with ``os.scandir``/``readlink`` and one ``stat`` per blob, and reports what the HF scan hides:
``.incomplete`` downloads (hf #4412) and partial snapshots (hf #4419, via pull records).
The data classes mirror huggingface_hub's (repo -> revision -> file), and like them are
immutable: a scan is a snapshot, and what changes the cache scans again.  (They compare by
identity: ``eq=False`` keeps defining them cheap, which ``ls`` pays at every start.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embctl.inventory import Entry
from embctl.naming import row_name


@dataclass(frozen=True, eq=False)
class Blob:
    name: str
    path: str
    size: int  # of the file it is, or links to
    atime: float
    mtime: float
    inode: tuple[int, int]  # (device, inode) of that file
    nlink: int = 1  # hard links to that file, here and elsewhere
    link: bool = False  # blobs/NAME is itself a symlink (deleting it frees nothing)


@dataclass(frozen=True, eq=False)
class SnapshotFile:
    path: str  # repo-relative, '/'-separated
    link: str  # the symlink (or file) in the snapshot
    blob: str | None  # blob name it points to; None when it is not a link into blobs/
    exists: bool  # the target exists


@dataclass(frozen=True, eq=False)
class Revision:
    commit: str
    refs: list[str]
    files: list[SnapshotFile]


@dataclass(frozen=True, eq=False)
class CachedRepo:
    repo_id: str
    repo_type: str
    path: str
    blobs: dict[str, Blob] = field(default_factory=dict)
    incomplete: list[Blob] = field(default_factory=list)
    revisions: list[Revision] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)  # ref name -> commit

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs.values())

    @property
    def incomplete_size(self) -> int:
        return sum(b.size for b in self.incomplete)

    @property
    def last_used(self) -> float | None:
        times = [b.atime for b in self.blobs.values()]
        return max(times) if times else None

    def revision(self, commit: str) -> Revision | None:
        return next((r for r in self.revisions if r.commit == commit), None)

    def head(self) -> Revision | None:
        """The revision 'main' points to, else the newest one."""
        commit = self.refs.get("main")
        if commit and self.revision(commit):
            return self.revision(commit)
        return self.revisions[0] if self.revisions else None


REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def _scan_blobs(blobs_dir: str) -> tuple[dict[str, Blob], list[Blob]]:
    blobs: dict[str, Blob] = {}
    incomplete: list[Blob] = []
    try:
        entries = list(os.scandir(blobs_dir))
    except OSError:
        return blobs, incomplete
    for entry in entries:
        try:
            st = entry.stat()  # follows a link into a shared blob store
        except OSError:
            continue
        blob = Blob(entry.name, entry.path, st.st_size, st.st_atime, st.st_mtime,
                    (st.st_dev, st.st_ino), st.st_nlink, entry.is_symlink())
        if entry.name.endswith(".incomplete"):
            incomplete.append(blob)
        else:
            blobs[entry.name] = blob
    return blobs, incomplete


def _scan_refs(refs_dir: str) -> dict[str, str]:
    refs: dict[str, str] = {}
    for folder, _dirs, names in os.walk(refs_dir):
        for name in names:
            full = os.path.join(folder, name)
            try:
                with open(full) as f:
                    refs[os.path.relpath(full, refs_dir).replace(os.sep, "/")] = f.read().strip()
            except OSError:
                continue
    return refs


def _scan_snapshot(snapshot_dir: str, blobs: dict[str, Blob]) -> list[SnapshotFile]:
    files: list[SnapshotFile] = []
    for folder, _dirs, names in os.walk(snapshot_dir):
        for name in names:
            link = os.path.join(folder, name)
            rel = os.path.relpath(link, snapshot_dir).replace(os.sep, "/")
            blob = None
            if os.path.islink(link):
                target = os.readlink(link)
                if os.path.basename(os.path.dirname(target)) == "blobs":
                    blob = os.path.basename(target)
            exists = blob in blobs if blob else os.path.exists(link)
            files.append(SnapshotFile(rel, link, blob, exists))
    return files


def scan_repo(path: str | os.PathLike[str]) -> CachedRepo | None:
    path = os.fspath(path)
    if not os.path.isdir(path) or os.path.islink(path):
        return None
    name = os.path.basename(path)
    prefix, _, rest = name.partition("--")
    if prefix not in REPO_TYPES or not rest:
        return None
    blobs, incomplete = _scan_blobs(os.path.join(path, "blobs"))
    refs = _scan_refs(os.path.join(path, "refs"))
    by_commit: dict[str, list[str]] = {}
    for ref, commit in refs.items():
        by_commit.setdefault(commit, []).append(ref)
    snapshots = os.path.join(path, "snapshots")
    try:
        commits = sorted(os.scandir(snapshots), key=lambda e: -e.stat().st_mtime)
    except OSError:
        commits = []
    revisions = [Revision(entry.name, sorted(by_commit.get(entry.name, [])),
                          _scan_snapshot(entry.path, blobs))
                 for entry in commits if entry.is_dir(follow_symlinks=False)]
    return CachedRepo(rest.replace("--", "/"), REPO_TYPES[prefix], path, blobs, incomplete,
                      revisions, refs)


def scan_cache(cache_dir: str | os.PathLike[str]) -> list[CachedRepo]:
    try:
        entries = sorted(os.scandir(cache_dir), key=lambda e: e.name)
    except OSError:
        return []
    repos = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and "--" in entry.name:
            repo = scan_repo(entry.path)
            if repo is not None:
                repos.append(repo)
    return repos


def _read_json(path: str) -> dict:
    """A small JSON file of a snapshot, read without touching its atime where the system
    allows (``embctl.noatime``): ``ls`` reading a model's config is no use of the model, and
    would otherwise make every model look used (under relatime, once a day)."""
    from embctl.noatime import open_noatime

    try:
        with open_noatime(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def model_dim(snapshot_dir: str) -> int | None:
    """The embedding dimension, from the files sentence-transformers/transformers write."""
    pooling = _read_json(os.path.join(snapshot_dir, "1_Pooling", "config.json"))
    if isinstance(pooling.get("word_embedding_dimension"), int):
        return pooling["word_embedding_dimension"]
    config = _read_json(os.path.join(snapshot_dir, "config.json"))
    for key in ("hidden_size", "d_model", "n_embd", "dim"):
        if isinstance(config.get(key), int):
            return config[key]
    sizes = config.get("hidden_sizes")
    if isinstance(sizes, list) and sizes and isinstance(sizes[-1], int):
        return sizes[-1]  # ResNet-style vision models
    return None


def repo_status(repo: CachedRepo, revision: Revision | None, record: dict) -> str:
    if revision is None:
        return "incomplete" if repo.incomplete else "empty"
    if any(not f.exists for f in revision.files):
        return "broken"
    entry = record.get("revisions", {}).get(revision.commit)
    if entry is not None:
        present = {f.path for f in revision.files}
        if not entry.get("complete") or any(p not in present for p in entry.get("files", {})):
            return "partial"
    if repo.incomplete:
        return "incomplete"
    return "ok"


#: Given a snapshot's file paths, the backend whose models look like that (or None).
Recognizer = Callable[[list[str]], str | None]


def model_entry(repo: CachedRepo, cache_dir: Path, recognize: Recognizer | None = None,
                ref: str | None = None, uses: dict[str, float] | None = None,
                record: dict | None = None) -> Entry:
    """The ``Entry`` of a cached model repo (its head revision).  Its backend is the one its
    pull recorded; for models other tools put in the cache, what ``recognize`` makes of the
    head's files.  ``ref`` overrides the name shown (else the pulled reference, or repo id).
    Last used: the later of the blobs' atime and embctl's own record of its uses (``uses``,
    read from ``embctl.models.uses`` when not given).  ``record``: its pull record, when the
    caller read it already."""
    from embctl.models.records import read_record

    head = repo.head()
    if record is None:
        record = read_record(repo.repo_id, cache_dir)
    backend = record.get("backend")
    if backend is None and head is not None and recognize is not None:
        backend = recognize([f.path for f in head.files])
    return _entry(repo, record, backend, ref or row_name(backend, repo.repo_id, record.get("ref")),
                  head, uses)


def _entry(repo: CachedRepo, record: dict, backend: str | None, ref: str,
           revision: Revision | None, uses: dict[str, float] | None,
           files: list[str] | None = None) -> Entry:
    """One row: ``backend``'s model at ``revision`` (``files``: the paths it uses, whose
    blobs make its size; None: the whole repo's)."""
    from embctl.models.uses import read_uses

    snapshot = os.path.join(repo.path, "snapshots", revision.commit) if revision else repo.path
    size = repo.size
    shown = revision.files if revision is not None else []  # the files ITEMS counts
    if files is not None and revision is not None:
        wanted = set(files)
        shown = [f for f in revision.files if f.path in wanted]
        blobs = {f.blob for f in shown if f.blob in repo.blobs}
        size = sum(repo.blobs[b].size for b in blobs)  # type: ignore[index]
    return Entry(
        kind="model",
        ref=ref,
        repo_id=repo.repo_id,
        backend=backend,
        revision=revision.commit if revision else None,
        dim=model_dim(snapshot) if revision else None,
        size_bytes=size,
        path=repo.path,
        last_used=_later(repo.last_used,
                         (read_uses() if uses is None else uses).get(os.path.abspath(repo.path))),
        status=repo_status(repo, revision, record),
        extra={
            "files": len(shown),  # of its revision (verify counts every revision's)
            "revisions": len(repo.revisions),
            "refs": sorted(repo.refs),
            "incomplete_bytes": repo.incomplete_size,
            **_pull_options(record, revision, backend),
        },
        notes=f"{len(repo.revisions)} revisions" if len(repo.revisions) > 1 else "",
        source=repo,
    )


def backend_entries(repo: CachedRepo, cache_dir: Path, recognize: Recognizer | None = None,
                    uses: dict[str, float] | None = None) -> list[Entry]:
    """A row per backend whose model the repo holds, at the commit that backend uses (its
    pin, else ``main``: :mod:`embctl.models.heads`), as its pulls recorded them; models
    pulled before records named backends, or put here by other tools, by ``recognize``."""
    from embctl.models.records import pinned, read_record

    record = read_record(repo.repo_id, cache_dir)
    rows: list[Entry] = []
    seen: set[str] = set()
    for commit, entry in record.get("revisions", {}).items():
        for backend, info in (entry.get("backends") or {}).items():
            current = pinned(record, backend, "main") or repo.refs.get("main")
            revision = repo.revision(commit)
            if commit != current or revision is None or backend in seen \
                    or not entry.get("complete") or not isinstance(info, dict):
                continue
            seen.add(backend)
            rows.append(_entry(repo, record, backend,
                               row_name(backend, repo.repo_id, info.get("ref")),
                               revision, uses, list(info.get("files") or [])))
    if not rows:
        return [model_entry(repo, cache_dir, recognize, uses=uses, record=record)]
    head = repo.head()
    guess = recognize([f.path for f in head.files]) if head and recognize else None
    if guess and guess not in seen:  # pulled before records named backends
        rows.append(_entry(repo, record, guess, row_name(guess, repo.repo_id), head, uses))
    return rows


def _pull_options(record: dict, head: Revision | None, backend: str | None) -> dict:
    """``{"pull_options": [...]}``: the backend's pull options each pull of the head used
    (``[{"variant": "int8"}]``), or nothing for backends without any."""
    entry = record.get("revisions", {}).get(head.commit, {}) if head else {}
    pulled = entry.get("pull_options", {}).get(backend) if backend else None
    return {"pull_options": pulled} if pulled else {}


def _later(a: float | None, b: float | None) -> float | None:
    return max((t for t in (a, b) if t is not None), default=None)


def model_entries(cache_dir: Path, recognize: Recognizer | None = None) -> list[Entry]:
    """The ``Entry`` rows of every cached model repo (one per backend), for ls and du."""
    from embctl.models.uses import read_uses

    uses = read_uses()
    return [entry for repo in scan_cache(cache_dir) if repo.repo_type == "model"
            for entry in backend_entries(repo, cache_dir, recognize, uses)]
