"""Reading a cached file without making it look used.

A model's "last used" is the later of embctl's own record of its uses and its blobs' newest
atime (docs/cache.md, "Last used"), so the commands that only look at the cache (``ls``,
``du``, ``verify``, a ``pull`` of a complete model) must read without moving atimes:

- Linux: ``O_NOATIME``, allowed to the file's owner and to root (CAP_FOWNER);
- systems without ``O_NOATIME`` (macOS, the BSDs): the atime is put back with ``os.utime``
  after reading, with the modification time as it was (and only while the file's size and
  modification time are still those seen before reading: a file written meanwhile is left
  as it is, so nothing that watches mtimes, like ``blob-hashes.json``, is fooled).

Where neither is permitted (another user's file: ``O_NOATIME`` and setting explicit times need
the same ownership), the read goes on and the kernel's atime rule applies (under ``relatime``,
at most once a day).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO


@contextmanager
def open_noatime(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """``open(path, "rb")`` that leaves the file's access time as it was, where permitted."""
    flag = getattr(os, "O_NOATIME", 0)
    fd = -1
    if flag:
        try:
            fd = os.open(path, os.O_RDONLY | flag)
        except PermissionError:  # not the file's owner: an ordinary read
            flag = 0
    if fd < 0:
        fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        before = None if flag else os.fstat(fd)
        try:
            yield f
        finally:
            if before is not None:
                _put_back(fd, before)


def _put_back(fd: int, before: os.stat_result) -> None:
    """Restore the atime ``before`` recorded, if the file was not written since."""
    try:
        now = os.fstat(fd)
        if (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns) \
                and now.st_atime_ns != before.st_atime_ns:
            os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))
    except (OSError, NotImplementedError):  # not ours, or no futimens: the read still stands
        pass
