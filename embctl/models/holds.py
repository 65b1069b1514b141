"""Lock files in the model cache, derived in one place, and the hold a running embctl keeps.

Every lock embctl takes on a model lies in ``<cache>/.locks/models--org--name/`` beside
huggingface_hub's per-blob locks, so removing a repo removes its locks too:

    embctl-pull.lock   taken by a pull while it updates the pull record
    embctl-use.lock    held *shared* by each process that uses the model (embed, load,
                       export) for as long as it uses it; ``rm --max-size`` / ``--filter``
                       skip a model whose lock they cannot take exclusively, and hold it
                       exclusively while they delete (``claimed``).

The hold is an ``flock`` (shared, so any number of users hold it at once); the kernel drops it
when the process ends, however it ends, so a killed embed never leaves a model pinned.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from embctl.paths import repo_folder_name

PULL_LOCK = "embctl-pull.lock"
USE_LOCK = "embctl-use.lock"


def lock_path(cache_dir: Path | str, repo_id: str, name: str) -> Path:
    """The lock file ``name`` of model ``repo_id`` in the cache at ``cache_dir``.  A plugin
    store keeping per-model files under EMBCTL_HOME derives its locks here too, with its own
    folder as ``cache_dir`` (``<folder>/.locks/models--org--name/<name>``)."""
    return Path(cache_dir) / ".locks" / repo_folder_name(repo_id) / name


@contextmanager
def hold(cache_dir: Path | str, repo_id: str) -> Iterator[None]:
    """Hold model ``repo_id`` in use (a shared lock) for the ``with`` block.  Best effort:
    where the lock cannot be made (a read-only cache, no ``fcntl``), the block runs unheld."""
    fd = take_hold(cache_dir, repo_id)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the flock


def _open_lock(cache_dir: Path | str, repo_id: str) -> int | None:
    """The model's use lock, opened (created when missing), or None where it cannot be."""
    try:
        from embctl.models.safefs import lock_file

        path = lock_file(Path(cache_dir), lock_path(cache_dir, repo_id, USE_LOCK))
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except Exception:  # a read-only cache, a planted link: run unheld, never fail
        return None


def take_hold(cache_dir: Path | str, repo_id: str) -> int | None:
    """The shared lock taken, as a file descriptor to ``os.close`` when done (or None).
    Waits while a removal has claimed the model (``claimed``)."""
    try:
        import fcntl
    except ImportError:  # no flock here: nothing is ever held
        return None
    fd = _open_lock(cache_dir, repo_id)
    if fd is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextmanager
def claimed(cache_dir: Path | str, repo_ids: Iterable[str]) -> Iterator[set[str]]:
    """Take each model's use lock *exclusively*, without waiting, for the ``with`` block (a
    removal); yield the repo ids a running embctl holds, which the removal must leave alone.
    A use that starts meanwhile waits for the block to end, so planning and deleting see the
    same holds."""
    fds: list[int] = []
    busy: set[str] = set()
    try:
        import fcntl
    except ImportError:
        yield busy
        return
    try:
        for repo_id in sorted(set(repo_ids)):
            fd = _open_lock(cache_dir, repo_id)
            if fd is None:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                busy.add(repo_id)
                continue
            fds.append(fd)
        yield busy
    finally:
        for fd in fds:
            os.close(fd)


def held(cache_dir: Path | str, repo_id: str) -> bool:
    """Whether a running process holds model ``repo_id`` (its use lock cannot be taken
    exclusively right now)."""
    try:
        import fcntl

        fd = os.open(lock_path(cache_dir, repo_id, USE_LOCK),
                     os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except (ImportError, OSError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
