"""OSErrors as one line: a full disk, a read-only folder, a missing file, stdout that cannot
be written (``embctl ls > /dev/full``), instead of a traceback.

Writes to a file object raise OSError without a file name, so stdout is wrapped at start-up
(:func:`name_stdout`): a failed write on it says "stdout".  After a failure, what is still
buffered for stdout is dropped, so the interpreter's final flush does not fail again on the way
out ("Exception ignored", exit 120).
"""

from __future__ import annotations

import errno
import io
import os
import sys

#: OSErrors that come from the user's files and disks (full, read-only, missing, no access),
#: reported as one line naming the file; any other is a bug and keeps its traceback.
USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
               errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EFBIG, errno.ENAMETOOLONG,
               errno.ELOOP, errno.ENXIO, errno.ENODEV, errno.EEXIST, errno.ENOTEMPTY}


class StdoutError(OSError):
    """A write to stdout failed (other than a closed pipe, which is not an error)."""


class _StdoutRaw(io.RawIOBase):
    """File descriptor 1 for a BufferedWriter, naming itself in its write errors."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data) -> int | None:  # type: ignore[override]
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return None  # as FileIO does: the BufferedWriter keeps the data
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutError(exc.errno, exc.strerror) from None


def name_stdout() -> None:
    """Replace sys.stdout by the same stream over :class:`_StdoutRaw` (same encoding, errors,
    buffering), so that its write errors are :class:`StdoutError`."""
    out = sys.stdout
    if out is None or out is not sys.__stdout__ or not isinstance(out, io.TextIOWrapper):
        return  # embctl run inside another program, or already replaced: leave it
    try:
        fd = out.fileno()
        out.flush()
    except (OSError, ValueError):
        return
    buffered = io.BufferedWriter(_StdoutRaw(fd))
    sys.stdout = io.TextIOWrapper(buffered, encoding=out.encoding, errors=out.errors,
                                  line_buffering=out.line_buffering,
                                  write_through=out.write_through)


def describe(exc: OSError) -> str:
    """One line: the file (or stdout) and the reason."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, StdoutError):
        return f"cannot write to stdout: {reason}"
    if exc.filename is not None:
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        return f"{where}: {reason}"
    return reason


def flush_stdout() -> None:
    """Write what is still buffered for stdout now, where its failure is reported (raises
    StdoutError, or BrokenPipeError)."""
    if sys.stdout is not None:
        sys.stdout.flush()


def drop_stdout() -> None:
    """After a failed run: if stdout cannot take what is still buffered, point it at
    /dev/null, so the interpreter's final flush does not fail again on the way out."""
    try:
        flush_stdout()
        return
    except (OSError, ValueError):
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
