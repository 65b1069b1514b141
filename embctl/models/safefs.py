"""Writing into a (possibly shared) model cache without ever following a symbolic link.

A link planted in a shared cache (``blobs/<etag>.incomplete -> ~victim/.bashrc``, a ``refs``
folder pointing elsewhere) would otherwise make pull, repair or import write outside the cache,
with the writer's permissions.  Every write into the cache goes through these helpers: folders
below the cache root are created and checked with ``lstat``, files are opened with
``O_NOFOLLOW``, and a link where a file or folder should be is refused with one line naming it.
The cache root itself may be a link (``HF_HOME`` on another disk); only what lies below it is
checked.  The only links embctl writes are snapshot entries, and those are replaced, never
written through.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from embctl.errors import EmbctlError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class LinkRefused(EmbctlError):
    """A symbolic link sits where embctl was about to write into the cache."""


def refuse(path: Path | str) -> LinkRefused:
    return LinkRefused(f"{path} is a symbolic link; refusing to write through it into the cache "
                       "(remove it and retry)")


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _below(root: Path, path: Path) -> list[Path]:
    """The folders from just below ``root`` down to ``path`` itself."""
    try:
        rel = Path(path).relative_to(root)
    except ValueError:
        raise EmbctlError(f"{path} is outside the cache {root}; refusing to write there") from None
    chain, current = [], Path(root)
    for part in rel.parts:
        current = current / part
        chain.append(current)
    return chain


def make_dirs(root: Path, path: Path) -> Path:
    """``mkdir -p path`` where ``path`` lies in ``root``; refuse any link below ``root``."""
    Path(root).mkdir(parents=True, exist_ok=True)
    for folder in _below(root, path):
        try:
            os.mkdir(folder)
        except FileExistsError:
            pass
        st = os.lstat(folder)
        if stat.S_ISLNK(st.st_mode):
            raise refuse(folder)
        if not stat.S_ISDIR(st.st_mode):
            raise EmbctlError(f"{folder} is not a folder; the cache is damaged (remove it)")
    return Path(path)


def check_file(path: Path) -> Path:
    """Refuse when ``path`` (a file about to be created, replaced or locked) is a link."""
    if _is_link(path):
        raise refuse(path)
    return Path(path)


def open_file(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that never follows a link at ``path``: returns a file descriptor."""
    try:
        return os.open(path, flags | NOFOLLOW | CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EEXIST and _is_link(path)):
            raise refuse(path) from None
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a fresh temporary file and a rename."""
    check_file(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # unlink removes a link itself, never its target
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def lock_file(root: Path, path: Path) -> str:
    """The lock file ``path`` (in ``root``) with its folders made and checked, as filelock wants
    it.  filelock opens it with ``O_NOFOLLOW`` itself; this turns a planted link into the
    one-line refusal instead of an ``ELOOP`` error."""
    make_dirs(root, path.parent)
    check_file(path)
    return str(path)
