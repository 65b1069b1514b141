"""The one rule for every path embctl deletes or overwrites outside its caches.

embctl writes user files (``embed -o``, ``export --vectors -o``, ``export matrix:... -o``) and
replaces folders (``export --to DIR --force``).  None of them may write into or through a cache
(a path inside the Hugging Face cache, ``HF_HOME`` or ``EMBCTL_HOME``, or a link that resolves
there, such as a snapshot entry pointing at a blob), and ``--force`` may replace only a folder
that holds an earlier embctl export and nothing else: never one that holds a cache or anything
the export did not write.  Everything here is refused with one line, before any byte moves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from embctl.errors import EmbctlError

#: The manifest ``embctl export --to`` writes; it is how an earlier export is recognised.
EXPORT_MANIFEST = ".embctl-export.json"


def cache_roots(extra: Iterable[os.PathLike[str] | str] = ()) -> list[tuple[str, Path]]:
    """(label, folder) of every cache: the model cache, HF_HOME, EMBCTL_HOME, and ``extra``
    (e.g. a ``--cache-dir``)."""
    from embctl.paths import embctl_home, hf_home, hub_cache_dir

    roots = [("the model cache", hub_cache_dir()), ("HF_HOME", hf_home()),
             ("EMBCTL_HOME", embctl_home())]
    roots += [("the model cache", Path(p)) for p in extra if p]
    return roots


def _forms(path: os.PathLike[str] | str) -> set[str]:
    """The path as written (made absolute) and as resolved through every link."""
    text = os.path.expanduser(os.fspath(path))
    return {os.path.abspath(text), os.path.realpath(text)}


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def cache_conflict(path: os.PathLike[str] | str, *, holding: bool = False,
                   extra: Iterable[os.PathLike[str] | str] = ()) -> str | None:
    """Why ``path`` touches a cache ("is inside EMBCTL_HOME (/x)"), or None.  With ``holding``,
    a folder that holds a cache counts too (replacing it would delete the cache)."""
    mine = _forms(path)
    for label, root in cache_roots(extra):
        for r in _forms(root):
            if any(_within(p, r) for p in mine):
                return f"is inside {label} ({r})"
            if holding and any(_within(r, p) for p in mine):
                return f"holds {label} ({r})"
    return None


def refuse_cache_path(path: os.PathLike[str] | str, option: str = "-o",
                      extra: Iterable[os.PathLike[str] | str] = ()) -> None:
    """Refuse an output file (or folder) inside a cache, or a link resolving into one."""
    why = cache_conflict(path, extra=extra)
    if why:
        raise EmbctlError(f"{option} {path}: {why}; embctl never writes into its caches: "
                          "choose a path outside them")


def check_replaceable(dest: Path, *, force: bool, option: str = "--to",
                      extra: Iterable[os.PathLike[str] | str] = ()) -> bool:
    """May ``dest`` become a new export?  True when it exists and will be replaced; False when it
    is missing or an empty folder.  Refuses (one line) a folder inside or holding a cache, a
    file, a folder holding anything but an earlier export, and an earlier export without
    ``force``."""
    why = cache_conflict(dest, holding=True, extra=extra)
    if why:
        raise EmbctlError(f"{option} {dest}: {why}; --to must be a new or empty folder, or an "
                          "earlier export, outside the caches")
    if not os.path.lexists(dest):
        return False
    if dest.is_symlink() or not dest.is_dir():
        raise EmbctlError(f"{option} {dest}: exists and is not a folder; choose a new folder")
    if not any(dest.iterdir()):
        return False
    stray = _not_exported(dest)
    if stray is not None:
        raise EmbctlError(f"{option} {dest}: not an earlier embctl export ({stray}); --force "
                          "replaces only an export and never deletes other files: choose a new "
                          "or empty folder")
    if not force:
        raise EmbctlError(f"{option} {dest}: exists and is not empty: an earlier export "
                          "(use --force to replace it)")
    return True


def _not_exported(folder: Path) -> str | None:
    """What in ``folder`` an embctl export did not write (a phrase), or None."""
    try:
        manifest = json.loads((folder / EXPORT_MANIFEST).read_text())
        listed = set(manifest["files"])
    except FileNotFoundError:
        return f"has no {EXPORT_MANIFEST}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {EXPORT_MANIFEST} is unreadable"
    for base, dirs, names in os.walk(folder):
        for name in dirs + names:
            full = os.path.join(base, name)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            if os.path.islink(full):
                return f"{rel} is a link the export did not write"
            if name in dirs:
                continue
            if rel not in listed and rel != EXPORT_MANIFEST:
                return f"{rel} is not in its {EXPORT_MANIFEST}"
            if not os.path.isfile(full):
                return f"{rel} is not a regular file"
    return None
