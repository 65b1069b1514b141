"""Files the user names for embctl to write (``embed -o``, ``export --vectors -o``).

A regular file is written under a temporary name beside it (``.NAME.PID.tmp``) and renamed into
place on success, so a failed or killed run never leaves a half-written file, nor the temporary
one.  A device or a pipe (``/dev/null``, ``/dev/stdout``, a FIFO) is written in place: renaming
a file over it would replace the device itself.  So is a name of an open file descriptor
(``/dev/stdout``, ``/dev/fd/N``) whatever it is open on: with ``> out.jsonl`` it is a regular
file, and renaming over ``/dev/stdout`` would replace the system's link.

Every failure is one line naming the file.  A path that cannot be used as given (its folder is
missing, it is a folder) is a usage error (exit 2), found before any work; a file that cannot be
created (no permission, a read-only disk) or written (a full disk) is a failure (exit 1).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from embctl.errors import EmbctlError, UsageError

#: errnos that mean "this path cannot be used as given" (a usage error, as click's own path
#: checks); any other (no permission, a read-only or full disk) is a failure, exit 1.
_PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP}


#: The folder of a process's open file descriptors, as ``realpath`` names it.
_FD_FOLDER = re.compile(r"/proc/\d+(/task/\d+)?/fd")


def _names_a_descriptor(path: Path) -> bool:
    """True for a name of an open file descriptor (``/dev/stdout``, ``/dev/fd/1``,
    ``/proc/self/fd/1``), followed link by link: not a folder entry to rename over."""
    name = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        if _FD_FOLDER.fullmatch(os.path.realpath(os.path.dirname(name))):
            return True
        if not os.path.islink(name):
            return False
        name = os.path.join(os.path.dirname(name), os.readlink(name))
    return False


def _in_place(path: Path) -> bool:
    """True for an existing target that is not a regular file (a device, a pipe, a socket),
    or that names an open file descriptor (``/dev/stdout``, even when it is a file)."""
    try:
        return (not stat.S_ISREG(os.stat(path).st_mode) and not path.is_dir()) or \
            _names_a_descriptor(path)
    except OSError:
        return False


def check_output(path: str | os.PathLike[str], option: str = "-o", *, probe: bool = True) -> None:
    """Refuse, before any work, an output path that cannot be written: its folder is missing
    or not a folder, it is a folder itself, it exists read-only, or (``probe``) no file can be
    created beside it (the temporary file is created and removed again).  A path inside a cache,
    or a link resolving into one, is refused (:mod:`embctl.guard`)."""
    from embctl.guard import refuse_cache_path

    refuse_cache_path(path, option)  # never into or through a cache (a link to a blob)
    target = Path(path)
    label = f"{option} {os.fspath(path)}"
    if target.is_dir():
        raise UsageError(f"{label}: is a folder; name a file in it "
                         f"(e.g. {os.path.join(os.fspath(path), 'vectors.jsonl')})")
    parent = target.parent
    if not parent.exists():
        raise UsageError(f"{label}: folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise UsageError(f"{label}: {parent} is not a folder")
    if _in_place(target):
        return
    if target.exists() and not os.access(target, os.W_OK):
        raise EmbctlError(f"{label}: the file is read-only")
    if probe:
        tmp = _temp_name(target)
        try:
            open(tmp, "wb").close()
        except OSError as exc:
            raise _create_error(label, target, exc) from None
        tmp.unlink(missing_ok=True)


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def _create_error(label: str, target: Path, exc: OSError) -> EmbctlError:
    cls = UsageError if exc.errno in _PATH_ERRNOS else EmbctlError
    return cls(f"{label}: cannot create a file in {target.parent}: {exc.strerror}")


class OutputFile:
    """One named output file: ``write`` then ``commit`` (rename into place) or ``discard``."""

    def __init__(self, path: str | os.PathLike[str], option: str = "-o") -> None:
        self.path = Path(path)
        self.label = f"{option} {os.fspath(path)}"
        check_output(path, option, probe=False)  # the open below is the probe
        self.tmp: Path | None = None
        in_place = _in_place(self.path)
        target = self.path if in_place else _temp_name(self.path)
        try:
            self.fh: IO[bytes] = open(target, "wb")
        except OSError as exc:
            if in_place:
                raise EmbctlError(f"{self.label}: cannot open it: {exc.strerror}") from None
            raise _create_error(self.label, self.path, exc) from None
        self.tmp = None if in_place else target

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn an OSError while writing (full disk, I/O error) into one line naming the file."""
        try:
            yield
        except OSError as exc:
            raise self.error(exc) from None

    def error(self, exc: OSError) -> EmbctlError:
        return EmbctlError(f"{self.label}: cannot write: {exc.strerror or exc}")

    def write(self, data: bytes | memoryview) -> None:
        with self.guard():
            self.fh.write(data)

    def commit(self) -> None:
        """Flush, close and rename into place; on failure nothing is left behind."""
        try:
            with self.guard():
                self.fh.close()
                if self.tmp is not None:
                    os.replace(self.tmp, self.path)
                    self.tmp = None
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Close and delete the temporary file (quietly: the run has failed already)."""
        try:
            self.fh.close()  # closes the descriptor even when the final flush fails
        except OSError:
            pass
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None
