"""Test homes that cost milliseconds: the model's blobs hard-linked, not copied.

`link_home` copies a home (``hf/`` and ``embctl/``) with every file under a Hugging Face
cache's ``blobs/`` folder hard-linked to the original, and every other file (refs, snapshots'
links, SQLite vector caches, JSON records) copied, so state a command writes in place never
leaks from one test to another.  A copy of the 88 MB model costs ~3 ms and a few KB.

The product only ever replaces a blob by rename, so a hard link is never written through.
A test that damages a blob on purpose calls `damage` (or `replace_bytes`), which breaks the
link first.  `BlobGuard` records the shared blobs of a home and, after each test, fails the
test that wrote into one anyway: it would have corrupted every later test's copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def _in_blobs(path: str) -> bool:
    return os.path.basename(os.path.dirname(path)) == "blobs"


def _link_blobs(src: str, dst: str) -> str:
    if _in_blobs(src):
        try:
            os.link(src, dst)
            return dst
        except OSError:  # another file system: a copy
            pass
    return shutil.copy2(src, dst)


def link_home(src: Path, dst: Path) -> Path:
    """A private copy of the test home ``src`` in ``dst`` (links kept as links, blobs
    hard-linked)."""
    for name in ("hf", "embctl"):
        if (src / name).exists():
            shutil.copytree(src / name, dst / name, symlinks=True, copy_function=_link_blobs)
    return dst


def own(path: Path) -> Path:
    """Make ``path`` (a blob, or a snapshot link to one) a file of this test's own: a copy
    replacing the hard link, so writing into it changes no other test's home."""
    real = path.resolve()
    if real.stat().st_nlink > 1:
        tmp = real.with_name(real.name + ".own")
        shutil.copy2(real, tmp)
        os.replace(tmp, real)
    return real


def damage(path: Path, change: Callable[[bytearray], object] | None = None) -> Path:
    """Corrupt the file behind ``path`` in this test's home only: its first byte flipped,
    or ``change(data)`` applied to its bytes.  Returns the real (blob) path."""
    real = own(path)
    data = bytearray(real.read_bytes())
    if change is None:
        data[0] ^= 0xFF
    else:
        change(data)
    with open(real, "r+b") as fh:  # written in place: the file is this test's own now
        fh.write(data)
        fh.truncate()
    return real


@dataclass
class BlobGuard:
    """The identity of each blob a shared home holds, to catch a test that wrote into one."""

    home: Path
    seen: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.seen = self._stat()

    def _stat(self) -> dict[str, tuple[int, int, int]]:
        out = {}
        for blob in self.home.glob("hf/hub/*/blobs/*"):
            st = blob.stat()
            out[str(blob)] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return out

    def changed(self) -> list[str]:
        """Shared blobs whose size or modification time changed since the home was made."""
        now = self._stat()
        return sorted(p for p, ident in self.seen.items() if now.get(p) != ident)


def own_blobs(home: Path) -> None:
    """Give every blob of ``home``'s Hugging Face cache a copy of its own: for tests of the
    bytes ``rm`` frees, which a hard-linked blob (still linked from the shared home) is not."""
    for blob in home.glob("hf/hub/*/blobs/*"):
        own(blob)
