"""Where things live.

Models live in the standard Hugging Face hub cache, resolved exactly as huggingface_hub resolves
it (``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``, ``XDG_CACHE_HOME``), or in
``SENTENCE_TRANSFORMERS_HOME`` when that is set, because sentence-transformers then uses it as
its cache folder.  The resolution is re-implemented here, not imported, so that ``embctl ls``
does not pay for importing huggingface_hub.

embctl's own files (vector caches, plugins' stores, pull records) live under ``EMBCTL_HOME``,
by default platformdirs' user cache directory for ``embctl``.
"""

from __future__ import annotations

import os
from pathlib import Path


def _expand(path: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(path)))


def hf_home() -> Path:
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return _expand(os.getenv("HF_HOME", default))


def hub_cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The model cache: ``--cache-dir``, else SENTENCE_TRANSFORMERS_HOME, else HF's hub cache."""
    if override:
        return _expand(os.fspath(override))
    st_home = os.getenv("SENTENCE_TRANSFORMERS_HOME")
    if st_home:
        return _expand(st_home)
    env = os.getenv("HF_HUB_CACHE") or os.getenv("HUGGINGFACE_HUB_CACHE")
    if env:
        return _expand(env)
    return hf_home() / "hub"


def embctl_home() -> Path:
    """EMBCTL_HOME, else the user cache directory; a usage error when it is a file (or under
    one): every command would otherwise find nothing there, or fail further down."""
    env = os.getenv("EMBCTL_HOME")
    if env:
        home = _expand(env)
        check_folder(home, "EMBCTL_HOME")
        return home
    from platformdirs import user_cache_dir

    home = Path(user_cache_dir("embctl", appauthor=False))
    check_folder(home, "embctl's cache folder")
    return home


def check_folder(path: Path, label: str, *, must_exist: bool = False) -> None:
    """A folder named by the user (EMBCTL_HOME, --cache-dir) that embctl reads or creates:
    refuse, as one line naming it, a path that is a file or lies under one, and a missing one
    when ``must_exist`` (a command that only reads, where a typo would show an empty cache)."""
    from embctl.errors import UsageError

    if path.is_dir():
        return
    if path.exists():
        raise UsageError(f"{label} {path}: is a file, not a folder")
    for parent in path.parents:
        if parent.is_dir():
            break
        if parent.exists():
            raise UsageError(f"{label} {path}: {parent} is a file, not a folder")
    if must_exist:
        raise UsageError(f"{label} {path}: no such folder")


def vectors_dir() -> Path:
    return embctl_home() / "vectors"


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    """``org/name`` -> ``models--org--name``, as huggingface_hub names cache folders."""
    return "--".join([f"{repo_type}s", *repo_id.split("/")])
