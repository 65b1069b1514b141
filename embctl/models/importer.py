"""``embctl pull REF --from DIR``: put a local model directory into the cache under REF.

The result is laid out exactly as huggingface_hub lays out a download (blobs named by content
hash, a snapshot of relative symlinks, ``refs/main``), so ``SentenceTransformer(REF)`` loads it
offline, and ``verify`` checks it like any other model.  Blob names follow the Hub's etags:
sha256 for large/LFS files, git's blob sha1 for small ones.

An ``embctl export`` (a folder with ``.embctl-export.json``) is imported as what it is: every
file is checked against the manifest's sha256 (a damaged or edited copy is refused), blobs take
the names the exporting cache gave them, and the exported revision is kept, so vector caches
made with the model on the first machine are hits on this one and ``verify --remote`` agrees
with the Hub.  A plain folder gets a revision of its own, derived from its content.

Nothing is written before every check has passed: links (:mod:`embctl.models.tree`), a config,
weights, the manifest, then the content hashes of the staged blobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from embctl.backends import Backend, Model
from embctl.console import warn
from embctl.errors import EmbctlError
from embctl.guard import EXPORT_MANIFEST as MANIFEST
from embctl.models import records
from embctl.models.download import link_blob
from embctl.models.hashing import hash_kind, stored_in_lfs
from embctl.models.heads import commit_for, plan_branch, settle
from embctl.models.hub import is_commit, repo_dir
from embctl.models.pull import PullResult, select
from embctl.models.safefs import check_file, make_dirs
from embctl.models.tree import model_files

#: What a loadable model's weights are stored in, whatever the backend.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".h5", ".msgpack", ".ot", ".pt", ".pth",
                   ".ckpt", ".gguf", ".pb", ".tflite")


def import_dir(model: Model, backend: Backend, cache_dir: Path, source: Path, *,
               include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
               follow_links: bool = False) -> PullResult:
    start = time.monotonic()
    source = source.expanduser()
    label = f"--from {source}"
    if not source.is_dir():
        raise EmbctlError(f"{label}: not a directory")
    found = model_files(source, label=label, follow_links=follow_links)
    wanted = select(backend, list(found), include, exclude)
    if not any(p.endswith("config.json") for p in wanted):
        raise EmbctlError(f"{label}: no config.json found; not a model directory")
    _require_weights(label, backend, list(found), wanted)
    manifest = _read_manifest(source, label)
    expected: dict[str, dict] = {}
    commit = None
    if manifest is not None:
        expected = _expected(manifest, label, backend, wanted, include, exclude)
        rev = manifest.get("revision")
        if manifest.get("repo_id") == model.repo_id and is_commit(rev):
            commit = rev
    storage = repo_dir(cache_dir, model.repo_id)
    names, sizes, digests = _store_blobs(cache_dir, storage, {p: found[p] for p in wanted},
                                         expected, label)
    total = sum(sizes.values())
    extra = {"imported_from": str(source.resolve()), "revision_kept": commit is not None}
    same = same_revision(model, cache_dir, digests)
    if same is not None and commit in (None, same):
        # Nothing changed: the cache already holds these files under ``same``; moving a
        # branch to a new commit would only make every cached vector miss.
        settle(model, cache_dir, plan_branch(model, cache_dir, same, names, names), same)
        records.update_record(model.repo_id, cache_dir, backend=model.backend, ref=model.ref,
                              commit=same, files=_files_of(cache_dir, model, same, sizes),
                              complete=True, wanted=sorted(names))
        return PullResult(model.ref, model.repo_id, model.backend, same, sorted(names), total,
                          up_to_date=True, seconds=time.monotonic() - start,
                          path=str(storage / "snapshots" / same),
                          extra={**extra, "unchanged": True})
    if commit is None:
        listing = "\n".join(f"{p} {names[p]}" for p in sorted(names))
        commit = hashlib.sha1(b"embctl import\n" + listing.encode()).hexdigest()
    branch = plan_branch(model, cache_dir, commit, names, names)
    snapshot = storage / "snapshots" / commit
    for path, blob in names.items():
        link_blob(storage / "blobs" / blob, snapshot / Path(*path.split("/")), cache_dir)
    records.update_record(model.repo_id, cache_dir, backend=model.backend, ref=model.ref,
                          commit=commit, files=_files_of(cache_dir, model, commit, sizes),
                          complete=True, wanted=sorted(names),
                          listing=None if extra["revision_kept"] else sorted(names))
    note = settle(model, cache_dir, branch, commit)
    if note:
        warn(note)
    return PullResult(model.ref, model.repo_id, model.backend, commit, sorted(names), total,
                      downloaded_files=len(names), downloaded_bytes=0,
                      seconds=time.monotonic() - start, path=str(snapshot), extra=extra)


def same_revision(model: Model, cache_dir: Path, digests: dict[str, tuple[str, ...]]
                  ) -> str | None:
    """A cached revision holding every one of ``digests``' paths with the same bytes (its
    blob named by one of the file's hashes: sha256, or git's sha1, whichever the Hub used):
    the one the backend uses first, else any."""
    from embctl.models.scan import scan_repo

    repo = scan_repo(repo_dir(cache_dir, model.repo_id))
    if repo is None:
        return None
    first = commit_for(model, cache_dir)
    for rev in sorted(repo.revisions, key=lambda r: r.commit != first):
        held = {f.path: f.blob for f in rev.files if f.exists}
        if all(held.get(path) in names for path, names in digests.items()):
            return rev.commit
    return None


def _files_of(cache_dir: Path, model: Model, commit: str, sizes: dict[str, int]
              ) -> dict[str, int]:
    """The files a revision should have: those earlier pulls recorded, and these."""
    earlier = records.read_record(model.repo_id, cache_dir).get("revisions", {}).get(
        commit, {}).get("files", {})
    return {**earlier, **sizes}


def _require_weights(label: str, backend: Backend, found: list[str], wanted: list[str]) -> None:
    """A folder without weights imports as a model that cannot load: refuse it up front."""
    if any(p.endswith(WEIGHT_SUFFIXES) for p in wanted):
        return
    unused = [p for p in found if p.endswith(WEIGHT_SUFFIXES)]
    why = (f"; {', '.join(unused[:3])} is not what the {backend.name} backend loads "
           "(--include GLOB adds files)" if unused else "")
    raise EmbctlError(f"{label}: no weight files (*.safetensors, *.bin, ...) among the files to "
                      f"import{why}; not a complete model, nothing imported")


def _read_manifest(source: Path, label: str) -> dict | None:
    path = source / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValueError("no files")
    except (OSError, ValueError) as exc:
        raise EmbctlError(f"{label}: {MANIFEST} is unreadable ({exc}); export the model again, "
                          "or delete it to import the folder as a plain model") from None
    return data


def _expected(manifest: dict, label: str, backend: Backend, wanted: list[str],
              include: tuple[str, ...], exclude: tuple[str, ...]) -> dict[str, dict]:
    """The manifest's entry for every file to import; refuses a copy that lost or gained
    files (the content itself is checked as it is copied)."""
    files = manifest["files"]
    unlisted = [p for p in wanted if not isinstance(files.get(p), dict)
                or not isinstance(files[p].get("sha256"), str)]
    if unlisted:
        raise EmbctlError(f"{label}: {unlisted[0]} is not in {MANIFEST}: the export was changed "
                          "after it was written; export the model again, or delete the manifest "
                          "to import the folder as a plain model")
    lost = sorted(set(select(backend, list(files), include, exclude)) - set(wanted))
    if lost:
        raise EmbctlError(f"{label}: {lost[0]} is listed in {MANIFEST} but missing: the copy is "
                          "incomplete; copy or export it again")
    return {p: files[p] for p in wanted}


class _Mismatch(Exception):
    pass


def _store_blobs(cache_dir: Path, storage: Path, files: dict[str, Path], expected: dict[str, dict],
                 label: str) -> tuple[dict[str, str], dict[str, int], dict[str, tuple[str, str]]]:
    """Stage every file under ``blobs/`` (temporary names), check each against the manifest
    and its blob name, then rename all into place.  Any failure leaves the cache as it was."""
    created = [p for p in (storage.parent, storage, storage / "blobs", storage / "snapshots")
               if not p.exists()]
    names: dict[str, str] = {}
    sizes: dict[str, int] = {}
    digests: dict[str, tuple[str, str]] = {}
    staged: dict[str, str] = {}  # temporary file -> blob name
    try:
        make_dirs(cache_dir, storage / "blobs")
        make_dirs(cache_dir, storage / "snapshots")
        for path, src in files.items():
            tmp, size, sha256, sha1 = _stage(src, storage / "blobs")
            staged[tmp] = ""
            if size < 0:
                raise _Mismatch(f"{path} changed while it was being read")
            entry = expected.get(path)
            name = _blob_for(path, size, sha256, sha1, entry)
            if entry is not None and entry.get("sha256") != sha256:
                raise _Mismatch(f"{path} does not match {MANIFEST} (sha256 {sha256[:12]}, "
                                f"expected {str(entry.get('sha256'))[:12]})")
            if name is None:
                raise _Mismatch(f"{path} does not match its blob name in {MANIFEST}")
            staged[tmp] = name
            names[path], sizes[path], digests[path] = name, size, (sha256, sha1)
        for tmp, name in list(staged.items()):
            os.replace(tmp, check_file(storage / "blobs" / name))
            del staged[tmp]
    except _Mismatch as exc:
        _undo(staged, created)
        raise EmbctlError(f"{label}: {exc}: the copy is damaged; nothing imported, copy or "
                          "export it again") from None
    except OSError as exc:
        _undo(staged, created)
        raise EmbctlError(f"{label}: cannot import into {storage}: {exc.strerror or exc}") \
            from None
    except BaseException:
        _undo(staged, created)
        raise
    return names, sizes, digests


def _blob_for(path: str, size: int, sha256: str, sha1: str, entry: dict | None) -> str | None:
    """The blob name: the exporting cache's (when it matches the content), else the Hub's
    rule: sha256 for LFS files, git's blob sha1 for small ones.  None: a false name."""
    given = entry.get("blob") if entry else None
    if isinstance(given, str) and hash_kind(given):
        return given if given in (sha256, sha1) else None
    return sha256 if stored_in_lfs(path, size) else sha1


def _stage(src: Path, blobs: Path) -> tuple[str, int, str, str]:
    """Copy src into a temporary file in blobs/, hashing it on the way.
    -> (temporary path, size (-1 when it changed while read), sha256, git blob sha1)"""
    size = src.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(f"blob {size}\0".encode())
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".import-", suffix=".incomplete")
    read = 0
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as fin:
            while chunk := fin.read(1 << 22):
                sha256.update(chunk)
                sha1.update(chunk)
                out.write(chunk)
                read += len(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp, size if read == size else -1, sha256.hexdigest(), sha1.hexdigest()


def _undo(staged: dict[str, str], created: list[Path]) -> None:
    for tmp in staged:
        Path(tmp).unlink(missing_ok=True)
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            pass
