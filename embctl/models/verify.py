"""Verifying cached models offline, and repairing what is wrong.

Each blob is hashed against its name (sha256 for LFS blobs, git blob sha1 for small files) in
a thread pool: hashlib releases the GIL while hashing, so both cores work.  Each blob is
hashed once however many revisions link to it.  Snapshot links to missing blobs are reported
too.  ``--remote`` adds a comparison with the Hub's file listing; ``--repair`` re-downloads
just the bad or missing files and checks them again.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from embctl.models import blobcheck, records
from embctl.models.hashing import hash_blob, hash_kind
from embctl.models.scan import CachedRepo
from embctl.progress import ByteProgress


@dataclass
class Problem:
    kind: str  # "model", "vectors", "matrix"
    ref: str
    path: str  # repo-relative file path, or a file on disk
    problem: str  # hash_mismatch, missing_blob, missing_file, unexpected_file, ...
    revision: str | None = None
    blob: str | None = None
    expected: str | None = None
    actual: str | None = None
    repaired: bool = False
    detail: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def resolved(self) -> bool:
        """Nothing is left wrong: repair mended it."""
        return self.repaired

    def lines(self) -> list[str]:
        return [self.describe()]

    def describe(self) -> str:
        where = f"{self.ref}@{self.revision[:8]}" if self.revision else self.ref
        text = f"{where}: {self.path}: {self.problem.replace('_', ' ')}"
        if self.actual:
            text += f" (expected {self.expected}, got {self.actual})"
        elif self.problem == "missing_blob":
            text += f" (blobs/{self.blob} is not in the cache)"
        elif self.expected:
            text += f" (expected {self.expected})"
        if self.detail:
            text += f" ({self.detail})"
        return text + (" [repaired]" if self.repaired else "")


def _hash_jobs(repos: list[CachedRepo]) -> list[tuple[CachedRepo, str]]:
    jobs = []
    for repo in repos:
        used = {f.blob for r in repo.revisions for f in r.files if f.blob and f.exists}
        jobs += [(repo, name) for name in sorted(used) if hash_kind(name)]
    return jobs


def verify_models(repos: list[CachedRepo], names: dict[str, str], *, workers: int | None = None,
                  quiet: bool = False) -> list[Problem]:
    """Check every snapshot link and every linked blob. ``names`` maps repo_id -> display ref."""
    problems: list[Problem] = []
    for repo in repos:
        for rev in repo.revisions:
            for f in rev.files:
                if not f.exists:
                    problems.append(Problem("model", names.get(repo.repo_id, repo.repo_id),
                                            f.path, "missing_blob", rev.commit, f.blob,
                                            expected=f.blob))
    jobs = _hash_jobs(repos)
    total = sum(repo.blobs[name].size for repo, name in jobs)
    bad: dict[tuple[str, str], str] = {}

    def check(job: tuple[CachedRepo, str]) -> tuple[CachedRepo, str, str]:
        repo, name = job
        return repo, name, hash_blob(repo.blobs[name].path, hash_kind(name))

    workers = workers or min(8, os.cpu_count() or 2)
    done = 0
    hashed: list[tuple[Path, str]] = []
    with ByteProgress("verifying", total, quiet=quiet, plain=False) as progress, ThreadPoolExecutor(
        max_workers=workers
    ) as pool:
        for repo, name, actual in pool.map(check, jobs):
            done += repo.blobs[name].size
            progress.update(done)
            hashed.append((Path(repo.blobs[name].path), actual))
            if actual != name:
                bad[(repo.repo_id, name)] = actual
    blobcheck.record(hashed)  # embed need not hash these again (see embctl/models/blobcheck.py)
    for repo in repos:
        for rev in repo.revisions:
            for f in rev.files:
                if f.blob and (repo.repo_id, f.blob) in bad:
                    problems.append(Problem(
                        "model", names.get(repo.repo_id, repo.repo_id), f.path, "hash_mismatch",
                        rev.commit, f.blob, expected=f.blob, actual=bad[(repo.repo_id, f.blob)]))
    return problems


def missing_from_record(repos: list[CachedRepo], cache_dir: Path,
                        names: dict[str, str]) -> list[Problem]:
    """Files a pull meant to fetch that its snapshot does not have (an interrupted pull)."""
    problems = []
    for repo in repos:
        revisions = records.read_record(repo.repo_id, cache_dir).get("revisions", {})
        for rev in repo.revisions:
            present = {f.path for f in rev.files}
            for path in revisions.get(rev.commit, {}).get("files", {}):
                if path not in present:
                    problems.append(Problem("model", names.get(repo.repo_id, repo.repo_id), path,
                                            "missing_file", rev.commit))
    return problems


def compare_remote(repo: CachedRepo, ref: str) -> list[Problem]:
    """Compare each revision with the Hub's listing of that commit (--remote)."""
    from embctl.models.hub import list_revision

    problems = []
    for rev in repo.revisions:
        listing = list_revision(repo.repo_id, rev.commit, ref)
        local = {f.path: f for f in rev.files}
        for path, f in local.items():
            remote = listing.files.get(path)
            if remote is None:
                problems.append(Problem("model", ref, path, "unexpected_file", rev.commit,
                                        f.blob, detail="not in the Hub's listing"))
            elif remote.etag and f.blob and remote.etag != f.blob:
                problems.append(Problem("model", ref, path, "wrong_version", rev.commit, f.blob,
                                        expected=remote.etag, actual=f.blob))
        record = records.read_record(repo.repo_id, Path(repo.path).parent)
        wanted = record.get("revisions", {}).get(rev.commit, {}).get("files", {})
        for path in wanted:
            if path not in local and path in listing.files:
                problems.append(Problem("model", ref, path, "missing_file", rev.commit))
    return problems


def repair(repo: CachedRepo, problems: list[Problem], cache_dir: Path) -> None:
    """Delete bad blobs and download the affected files again, pinned to their commit.
    Offline, nothing is touched: each problem says why it was not repaired."""
    from embctl.models.download import fetch_file
    from embctl.models.hub import hub_error, is_offline
    from embctl.models.safefs import LinkRefused

    if is_offline():
        for p in problems:
            p.detail = "not repaired: HF_HUB_OFFLINE=1 forbids downloading; unset it to repair"
        return
    for p in problems:
        if p.problem in ("hash_mismatch", "wrong_version") and p.blob in repo.blobs:
            Path(repo.blobs[p.blob].path).unlink(missing_ok=True)
    for p in problems:
        if p.problem not in ("hash_mismatch", "missing_blob", "missing_file", "wrong_version"):
            continue
        link = Path(repo.path, "snapshots", p.revision, *p.path.split("/"))
        if link.is_symlink():
            link.unlink()  # a stale link would shadow the fresh download
        try:
            fetch_file(repo.repo_id, p.path, p.revision, cache_dir, Path(repo.path))
            p.repaired = True
        except LinkRefused:
            raise  # a link planted in the cache: stop, with one line naming it
        except Exception as exc:  # reported, and the command exits 1
            p.detail = str(hub_error(p.ref, exc))


def check_models(repos: list[CachedRepo], cache_dir: Path, names: dict[str, str], *,
                 remote: bool = False, workers: int | None = None,
                 quiet: bool = False) -> list[Problem]:
    """Every offline check (and the Hub comparison with ``remote``) over ``repos``."""
    problems = verify_models(repos, names, workers=workers, quiet=quiet)
    problems += missing_from_record(repos, cache_dir, names)
    if remote:
        for repo in repos:
            problems += compare_remote(repo, names.get(repo.repo_id, repo.repo_id))
    return problems


#: Problems meaning a revision's bytes were not its own: vectors computed from it may be wrong.
WRONG_BYTES = ("hash_mismatch", "wrong_version")


def trusted_blobs(repos: list[CachedRepo]) -> set[tuple[str, str]]:
    """(repo id, blob name) of each blob that embed's check before computing used without
    hashing it (``blobcheck.vouched``).  Ask before checking: the check records its hashes."""
    paths = {Path(blob.path): (repo.repo_id, name)
             for repo in repos for name, blob in repo.blobs.items()}
    return {paths[p] for p in blobcheck.vouched(paths)}


def damaged_revisions(repos: list[CachedRepo], problems: list[Problem],
                      names: dict[str, str],
                      trusted: set[tuple[str, str]] | None = None) -> list[tuple[str, str, str]]:
    """(repo id, commit, display ref) of each revision from whose wrong bytes vectors may have
    been computed: a file at the wrong version (its blob matches its own name, so embed's
    check passes it), or a hash mismatch of a blob in ``trusted`` (``trusted_blobs``; None:
    every hash mismatch).  Any other damage was refused by embed's check, so no vector was
    computed from it (docs/cache.md, "What a repair keeps")."""
    found: dict[tuple[str, str], str] = {}
    for repo in repos:
        ref = names.get(repo.repo_id, repo.repo_id)
        for p in problems:
            if p.ref != ref or not p.revision or p.problem not in WRONG_BYTES:
                continue
            if p.problem == "hash_mismatch" and trusted is not None \
                    and (repo.repo_id, p.blob) not in trusted:
                continue
            found[(repo.repo_id, p.revision)] = ref
    return [(repo_id, commit, ref) for (repo_id, commit), ref in found.items()]


def repaired_files(repos: list[CachedRepo], problems: list[Problem],
                   names: dict[str, str]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(repo id, commit, display ref, paths) of each revision whose files with wrong bytes a
    repair replaced by the right ones: what other stores made from those files (an ONNX
    export) is to be made again."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for repo in repos:
        ref = names.get(repo.repo_id, repo.repo_id)
        for p in problems:
            if p.ref == ref and p.revision and p.repaired and p.problem in WRONG_BYTES:
                paths = found.setdefault((repo.repo_id, p.revision, ref), [])
                if p.path not in paths:
                    paths.append(p.path)
    return [(*key, tuple(sorted(paths))) for key, paths in found.items()]


def check_and_repair(repos: list[CachedRepo], cache_dir: Path, names: dict[str, str], *,
                     remote: bool = False, workers: int | None = None, quiet: bool = False,
                     on_repair=None) -> tuple[list[CachedRepo], list[Problem]]:
    """Check, repair what is wrong, check again.  Returns the rescanned repos and every problem
    found, each marked ``repaired`` only if the second check no longer finds it."""
    from embctl.models.scan import scan_repo

    def same(a: Problem, b: Problem) -> bool:
        return a.path == b.path and a.revision == b.revision and a.ref == b.ref

    kwargs = {"remote": remote, "workers": workers, "quiet": quiet}
    problems = check_models(repos, cache_dir, names, **kwargs)
    if not problems:
        return repos, problems
    for repo in repos:
        mine = [p for p in problems if p.ref == names.get(repo.repo_id, repo.repo_id)]
        if mine:
            if on_repair is not None:
                on_repair(repo, mine)
            repair(repo, mine, cache_dir)
    repos = [r for r in (scan_repo(r.path) for r in repos) if r is not None]
    remaining = check_models(repos, cache_dir, names, **kwargs)
    for p in problems:
        if any(same(p, q) for q in remaining):
            p.repaired = False
    problems += [q for q in remaining if not any(same(p, q) for p in problems)]
    return repos, problems
