"""When embctl itself last used each model: ``EMBCTL_HOME/usage.json``.

Blob atimes alone are not to be trusted (never updated on ``noatime`` mounts, at most daily
under ``relatime``), so embed, ``embctl.load`` and export record their use here, and ``ls``
shows the later of this record and the atime.  Keyed by the repo folder's absolute path (one
model in two caches is two models).  Cheap: a model's time is rewritten at most once a
:data:`MIN_INTERVAL`, atomically (a temporary file renamed over it); a lost race costs one
use's time, never the file.  Best effort: recording never fails a command.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

FILE_NAME = "usage.json"
#: A model's record is rewritten at most this often (seconds).
MIN_INTERVAL = 60.0


def _path() -> Path:
    from embctl.paths import embctl_home

    return embctl_home() / FILE_NAME


def read_uses() -> dict[str, float]:
    """``{repo folder: epoch seconds}``; empty when there is no (readable) record."""
    try:
        with open(_path()) as f:
            data = json.load(f)
    except (OSError, ValueError, Exception):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}


def record_use(repo_dir: str | os.PathLike[str], now: float | None = None) -> None:
    """Note that embctl used the model in ``repo_dir`` now."""
    now = time.time() if now is None else now
    key = os.path.abspath(repo_dir)
    try:
        uses = read_uses()
        if now - uses.get(key, 0.0) < MIN_INTERVAL:
            return
        uses[key] = now
        from embctl.jsonfile import write_json_atomic

        path = _path()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, uses, prefix=".usage-", indent=0)
    except Exception:  # a read-only home, a full disk: the use simply goes unrecorded
        return


def use_model(cache_dir: str | os.PathLike[str], repo_id: str) -> int | None:
    """Start using a Hub model: hold it (``embctl.models.holds``) and record the use.
    Returns the hold, to ``os.close`` when done (None when it could not be taken)."""
    from embctl.models.holds import take_hold
    from embctl.paths import repo_folder_name

    fd = take_hold(cache_dir, repo_id)
    record_use(Path(cache_dir) / repo_folder_name(repo_id))
    return fd
