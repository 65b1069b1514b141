"""Writing cache files safely: ``<path>.incomplete`` until whole, then an atomic rename.

A :class:`PendingFile` starts with a fixed ``prefix`` (a matrix file's header, written with a
placeholder sha256 of the same width) followed by data appended in order.  An interrupted
write leaves only the ``.incomplete`` file; the next attempt resumes from its size when its
prefix is byte-for-byte the one expected, and starts over otherwise.  :meth:`commit` checks
the size, rewrites the prefix (now with the real hash), fsyncs and renames: a file without
``.incomplete`` is always complete.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from embctl.plugin import EmbctlError

INCOMPLETE = ".incomplete"


class PendingFile:
    def __init__(self, path: Path, size: int, prefix: bytes = b"", *, hashed: bool = True
                 ) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + INCOMPLETE)
        self.size = size  # data bytes expected after the prefix
        self.prefix = prefix
        self.have = 0
        self._hash = hashlib.sha256() if hashed else None
        self._f = None

    def open(self, *, resume: bool = True) -> int:
        """Open for appending; return the data bytes already present (0 on a fresh start)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        have = self._usable_bytes() if resume else 0
        if have <= 0:
            with open(self.tmp, "wb") as f:
                f.write(self.prefix)
            have = 0
        self._f = open(self.tmp, "r+b")
        if self._hash is not None:
            self._hash = hashlib.sha256()  # of the bytes on disk, whatever came before
        if have and self._hash is not None:
            self._f.seek(len(self.prefix))
            left = have
            while left:
                buf = self._f.read(min(left, 8 << 20))
                self._hash.update(buf)
                left -= len(buf)
        self._f.seek(len(self.prefix) + have)
        self._f.truncate()
        self.have = have
        return have

    def _usable_bytes(self) -> int:
        try:
            size = self.tmp.stat().st_size
            with open(self.tmp, "rb") as f:
                head = f.read(len(self.prefix))
        except OSError:
            return 0
        if head != self.prefix:
            return 0
        have = size - len(self.prefix)
        return have if 0 <= have <= self.size else 0

    def write(self, data: bytes | memoryview) -> None:
        if self.have + len(data) > self.size:
            raise EmbctlError(f"{self.path.name}: received more data than expected")
        assert self._f is not None
        self._f.write(data)
        if self._hash is not None:
            self._hash.update(data)
        self.have += len(data)

    @property
    def sha256(self) -> str:
        assert self._hash is not None
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def commit(self, prefix: bytes | None = None) -> Path:
        """Check the size, write the final prefix, fsync and rename into place."""
        assert self._f is not None
        if self.have != self.size:
            self.close()
            raise EmbctlError(
                f"{self.path.name}: incomplete ({self.have:,} of {self.size:,} bytes)")
        if prefix is not None:
            if len(prefix) != len(self.prefix):
                raise AssertionError("final header must keep the placeholder's length")
            self._f.seek(0)
            self._f.write(prefix)
        self._f.flush()
        os.fsync(self._f.fileno())
        self.close()
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
