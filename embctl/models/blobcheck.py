"""Checking a model's cache blobs against their hashes before computing vectors with them.

A blob in the Hugging Face cache is named by its content hash (sha256, or git's blob sha1 for
small files), so a damaged or replaced blob can be told from the right one by hashing it.
Hashing on every run would cost (0.1 s for all-MiniLM-L6-v2's 91 MB, about 1 s a GB), so each
verdict is remembered in ``EMBCTL_HOME/blob-hashes.json`` under the blob's name, size and
modification time: a blob is hashed again only after it was written to or replaced (a
damaging write, a repair, another tool), and ``embctl verify`` records what it hashes.  Damage
that keeps a file's size and time (bit rot) is what ``embctl verify`` is for; when it finds
such damage, the memo keeps a mark (:data:`TRUSTED`), so that ``verify --repair`` knows that
vectors may have been computed from those bytes (:func:`vouched`, docs/cache.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from embctl.models.hashing import hash_blob, hash_kind
from embctl.paths import embctl_home

MEMO = "blob-hashes.json"
MAX_ENTRIES = 4096
#: The key prefix marking a stamp the memo held as good that a later hash found damaged.
TRUSTED = "trusted "


def _memo_path() -> Path:
    return embctl_home() / MEMO


def _stamp(name: str, st: os.stat_result) -> str:
    return f"{name} {st.st_size} {st.st_mtime_ns}"


def _load() -> dict[str, str]:
    try:
        data = json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(memo: dict[str, str]) -> None:
    """Write the memo atomically; a memo that cannot be written only costs a hash later."""
    from embctl.jsonfile import write_json_atomic

    path = _memo_path()
    entries = list(memo.items())[-MAX_ENTRIES:]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, dict(entries), prefix=".blob-hashes.")
    except OSError:
        pass


def record(hashed: Iterable[tuple[Path, str]]) -> None:
    """Remember blobs hashed elsewhere (by ``verify``): (blob path, actual hash)."""
    memo = _load()
    changed = False
    for path, actual in hashed:
        try:
            stamp = _stamp(path.name, path.stat())
        except OSError:
            continue
        if memo.get(stamp) == path.name and actual != path.name:
            memo[TRUSTED + stamp] = path.name  # damage the check let through: see vouched()
        memo[stamp] = actual
        changed = True
    if changed:
        _save(memo)


def damaged(files: Iterable[Path]) -> list[tuple[Path, str, str]]:
    """The files that are cache blobs (links to ``blobs/<hash>``) whose content does not
    match their name: (file, expected hash, actual hash).  Other files are not checked."""
    memo: dict[str, str] | None = None
    bad = []
    new = False
    for file in files:
        if not os.path.islink(file):
            continue
        blob = file.resolve()
        kind = hash_kind(blob.name)
        if kind is None:
            continue
        try:
            st = blob.stat()
        except OSError:
            continue  # a missing blob: loading the model says so
        if memo is None:
            memo = _load()
        stamp = _stamp(blob.name, st)
        actual = memo.get(stamp)
        if actual is None:
            try:
                actual = hash_blob(blob, kind)
            except OSError:
                continue
            memo[stamp] = actual
            new = True
        if actual != blob.name:
            bad.append((file, blob.name, actual))
    if new and memo is not None:
        _save(memo)
    return bad


def snapshot_path(file: Path) -> str:
    """``1_Pooling/config.json`` for ``.../snapshots/<commit>/1_Pooling/config.json``."""
    parts = file.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        return "/".join(parts[i + 2:])
    return file.name


def vouched(blobs: Iterable[Path]) -> set[Path]:
    """The blobs whose size and modification time, as they are now, the memo holds (or held,
    until a ``verify`` hashed them) as hashed to their name: the check before computing
    (:func:`damaged`) used them without hashing them again, so vectors may have been computed
    from their bytes.  A blob damaged any other way was refused by that check."""
    memo = _load()
    found = set()
    for blob in blobs:
        try:
            stamp = _stamp(blob.name, blob.stat())
        except OSError:
            continue
        if memo.get(stamp) == blob.name or TRUSTED + stamp in memo:
            found.add(blob)
    return found
