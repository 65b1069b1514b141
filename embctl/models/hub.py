"""Talking to the Hub through huggingface_hub: listing a revision, and turning its errors into
one-line messages that name the reference and the cause.

huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` when first imported, so it is
imported here, inside functions, only by commands that need the network.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from embctl.errors import EmbctlError

COMMIT_LEN = 40


class HubUnreachable(EmbctlError):
    """The Hub cannot be asked: HF_HUB_OFFLINE=1, or the connection fails.  ``reason`` is the
    cause alone, so a command that needed a model it does not have can say so in its words."""

    def __init__(self, ref: str, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"{ref}: {reason}")
        self.ref = ref
        self.reason = reason

    @classmethod
    def offline(cls, ref: str) -> HubUnreachable:
        return cls(ref, "HF_HUB_OFFLINE=1 forbids downloading it",
                   f"{ref}: not in the cache and HF_HUB_OFFLINE=1 forbids downloading it")


class RepoNotFound(EmbctlError):
    """The Hub has no such repo (or a private one): a typo, most often."""


def import_hf():
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import huggingface_hub

    return huggingface_hub


def is_offline() -> bool:
    return os.getenv("HF_HUB_OFFLINE", "").strip().lower() in {"1", "on", "yes", "true"}


def is_commit(revision: str | None) -> bool:
    return bool(revision) and len(revision) == COMMIT_LEN and all(
        c in "0123456789abcdef" for c in revision
    )


def is_safe_repo_path(path: str) -> bool:
    """A repo file path we will write under a snapshot: relative, no '..', no odd parts."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    parts = path.split("/")
    return all(part not in ("", ".", "..") for part in parts) and posixpath.normpath(path) == path


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    etag: str | None  # sha256 for LFS files, git blob sha1 otherwise: the blob's name in cache


@dataclass(frozen=True)
class Listing:
    repo_id: str
    commit: str
    files: dict[str, RemoteFile]


def list_revision(repo_id: str, revision: str | None, ref: str) -> Listing:
    """The commit a revision points to and every file in it, with sizes and hashes."""
    hf = import_hf()
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        info = hf.HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except RevisionNotFoundError:
        raise EmbctlError(f"{ref}: revision not found on the Hub: {revision or 'main'!r} is "
                          f"no branch, tag or commit of {repo_id}") from None
    except Exception as exc:
        raise hub_error(ref, exc) from None
    files: dict[str, RemoteFile] = {}
    for sibling in info.siblings or []:
        path = sibling.rfilename
        if not is_safe_repo_path(path):
            raise EmbctlError(
                f"{ref}: the server lists an unsafe file path {path!r}; refusing to pull"
            )
        lfs = getattr(sibling, "lfs", None)
        etag = lfs.sha256 if lfs else getattr(sibling, "blob_id", None)
        files[path] = RemoteFile(path, int(sibling.size or 0), etag)
    if not is_commit(info.sha):
        raise EmbctlError(f"{ref}: the server gave no valid commit hash for {revision or 'main'}")
    return Listing(repo_id, info.sha, files)


def hub_error(ref: str, exc: BaseException) -> EmbctlError:
    """Map a huggingface_hub / network exception to a one-line EmbctlError."""
    from huggingface_hub import errors as e

    if isinstance(exc, EmbctlError):
        return exc
    if isinstance(exc, e.OfflineModeIsEnabled) or (
        isinstance(exc, e.LocalEntryNotFoundError) and is_offline()
    ):
        return HubUnreachable(ref, "HF_HUB_OFFLINE=1 forbids downloading it",
                              f"{ref}: HF_HUB_OFFLINE=1 forbids contacting the Hub; unset it")
    if isinstance(exc, e.GatedRepoError):
        return EmbctlError(
            f"{ref}: gated repo; accept its terms on the Hub and log in "
            "(HF_TOKEN or `hf auth login`)"
        )
    if isinstance(exc, e.RevisionNotFoundError):
        return EmbctlError(f"{ref}: revision not found on the Hub")
    if isinstance(exc, e.RepositoryNotFoundError):
        return RepoNotFound(f"{ref}: model not found on the Hub (or private: set HF_TOKEN)")
    if isinstance(exc, e.RemoteEntryNotFoundError):
        return EmbctlError(f"{ref}: file not found on the Hub: {_short(exc)}")
    if isinstance(exc, e.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return EmbctlError(f"{ref}: the Hub answered HTTP {status}: {_short(exc)}")
    if isinstance(exc, e.LocalEntryNotFoundError):
        return HubUnreachable(ref, f"the Hub cannot be reached ({_short(exc)})",
                              f"{ref}: could not reach the Hub ({_short(exc)})")
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or "httpx" in type(exc).__module__:
        cause = f"{type(exc).__name__}: {_short(exc)}"
        return HubUnreachable(ref, f"the Hub cannot be reached ({cause})",
                              f"{ref}: connection failed: {cause}")
    return EmbctlError(f"{ref}: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def repo_dir(cache_dir: Path, repo_id: str) -> Path:
    from embctl.paths import repo_folder_name

    return cache_dir / repo_folder_name(repo_id)


def write_ref(storage: Path, name: str, commit: str) -> None:
    """Point refs/<name> at commit, atomically (readers never see an empty ref), never
    writing through a link planted in the cache."""
    from embctl.models.safefs import make_dirs, write_text_atomic

    path = storage / "refs" / name
    make_dirs(storage.parent, path.parent)
    write_text_atomic(path, commit)


def read_ref(storage: Path, name: str) -> str | None:
    try:
        value = (storage / "refs" / name).read_text().strip()
    except OSError:
        return None
    return value if is_commit(value) else None


def cached_commit(cache_dir: Path, repo_id: str, revision: str | None) -> str | None:
    """The commit ``revision`` names in the Hugging Face cache at ``cache_dir``: the revision
    itself when it is a commit, else what its branch or tag (``main`` for None) points to;
    None when the cache has no such ref.  Offline and cheap.  For plugins
    (``embctl.plugin``), which read the cache through this, not through its ``refs`` files."""
    return revision if is_commit(revision) else read_ref(repo_dir(cache_dir, repo_id),
                                                          revision or "main")
