"""ONNX exports of repos that ship no ONNX weights, kept in embctl's own files.

When a repo has no ONNX file for the variant asked for, the ``onnx:`` backend pulls what
sentence-transformers would (configs, tokenizer, one set of torch weights) and calls
:func:`export_model`: torch writes the transformer as ONNX (and onnxruntime quantizes it for
``int8``) into a bucket under ``EMBCTL_HOME/onnx-exports`` (``exports.layout``), never into
the Hugging Face snapshot, which stays exactly what the Hub has.  :func:`find_export` finds a
finished export without importing anything heavy.  The exports are a store of their own
(``exports.store``): ``ls``, ``du``, ``rm`` and ``verify`` see them.

Concurrency and interruption: one export of a bucket at a time (a file lock derived by
``embctl.models.holds.lock_path``); the export is written to a temporary folder and renamed
into place with its manifest, so a killed export leaves nothing :func:`find_export` returns,
and a second process waiting on the lock finds the first one's export instead of redoing it.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from embctl.plugin import EmbctlError
from embctl_onnx.exports.layout import (
    MODEL_FILE,
    TMP_PREFIX,
    Manifest,
    ManifestError,
    bucket_dir,
    describe_files,
    exports_dir,
    read_manifest,
    size_matches,
    stale_files,
    write_manifest,
)


@dataclass(frozen=True)
class Export:
    """A finished export."""

    path: Path  # the exported .onnx file (in embctl's own files, never the HF snapshot)
    sha256: str  # of that file
    variant: str  # "fp32" or "int8"


def find_export(repo_id: str, revision: str, variant: str) -> Export | None:
    """The finished export of ``repo_id`` at ``revision`` (a commit) for ``variant``, or None.

    Cheap (no hashing, standard library only): the bucket's manifest must describe it and its
    files must have their sizes; ``embctl verify`` checks their hashes.  A stale export (made
    from a file a repair replaced: ``exports.repair``) is not found, so it is made again."""
    try:
        bucket = bucket_dir(repo_id, revision, variant)
        manifest = read_manifest(bucket)
    except (ValueError, OSError):  # ManifestError is a ValueError
        return None
    if stale_files(bucket) is not None:
        return None
    if manifest.repo_id != repo_id or manifest.revision != revision \
            or not size_matches(bucket, manifest):
        return None
    return Export(bucket / MODEL_FILE, manifest.sha256, variant)


def export_model(snapshot: Path, repo_id: str, revision: str, variant: str, *,
                 quiet: bool = False) -> Export:
    """Export the snapshot's transformer to ONNX (``fp32``), or that export quantized
    (``int8``, which exports ``fp32`` first when it is not there); return the export.

    ``snapshot`` is the model's folder at ``revision`` (the Hub cache's snapshot): read, never
    written.  Needs torch, transformers and onnx: without them, one EmbctlError naming what
    to install."""
    try:
        bucket = bucket_dir(repo_id, revision, variant)
    except ValueError as exc:
        raise EmbctlError(f"cannot export {repo_id}@{revision}: {exc}") from None
    found = find_export(repo_id, revision, variant)
    if found is not None:
        return found
    from embctl_onnx.exports.convert import INSTALL, missing_for

    # int8 quantizes the fp32 export: once that exists, torch is no longer needed.
    quantize_only = variant == "int8" and find_export(repo_id, revision, "fp32") is not None
    missing = missing_for("quantize" if quantize_only else variant)
    if missing:
        raise EmbctlError(f"{repo_id} has no ONNX weights{_for(variant)}, and exporting them "
                          f"needs {', '.join(missing)}, which cannot be imported here: "
                          f"{INSTALL}")
    if not Path(snapshot).is_dir():
        raise EmbctlError(f"cannot export {repo_id}: no model folder at {snapshot}")
    source = export_model(snapshot, repo_id, revision, "fp32", quiet=quiet) \
        if variant == "int8" else None
    with _locked(repo_id, revision, variant, quiet):
        found = find_export(repo_id, revision, variant)
        if found is not None:  # another process exported it while this one waited
            return found
        _clear_leftovers(bucket)
        with _model_held(Path(snapshot), repo_id):
            return _export_into(bucket, Path(snapshot), repo_id, revision, variant, source,
                                quiet)


def _for(variant: str) -> str:
    return "" if variant == "fp32" else f" for variant {variant}"


def export_lock(repo_id: str, revision: str, variant: str):
    """The bucket's export lock, ``EMBCTL_HOME/onnx-exports/v1/.locks/models--org--name/
    <revision>-<variant>.lock`` (a ``filelock.FileLock``, not taken)."""
    from filelock import FileLock

    from embctl.plugin import lock_file, lock_path

    root = exports_dir()
    return FileLock(lock_file(root, lock_path(root, repo_id, f"{revision}-{variant}.lock")))


@contextmanager
def _locked(repo_id: str, revision: str, variant: str, quiet: bool) -> Iterator[None]:
    """The bucket's export lock, waited for."""
    from filelock import Timeout

    from embctl.plugin import info

    lock = export_lock(repo_id, revision, variant)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not quiet:
            info(f"waiting for another export of {repo_id}@{revision[:8]} ({variant})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _model_held(snapshot: Path, repo_id: str):
    """Hold the model in use while its snapshot is read (``rm --max-size`` leaves it alone),
    when the snapshot lies in a Hub cache."""
    from embctl.plugin import hold, repo_folder_name

    if snapshot.parent.name == "snapshots" and \
            snapshot.parent.parent.name == repo_folder_name(repo_id):
        return hold(snapshot.parents[2], repo_id)
    return nullcontext()


def _clear_leftovers(bucket: Path) -> None:
    """Under the lock: the temporary folders of interrupted exports of this bucket, and a
    bucket that exists but is not a finished export (a damaged manifest), go."""
    parent = bucket.parent
    if parent.is_dir():
        for tmp in parent.glob(f"{TMP_PREFIX}{bucket.name}-*"):
            shutil.rmtree(tmp, ignore_errors=True)
    if bucket.is_dir() or bucket.is_symlink():
        _remove(bucket)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)


def _export_into(bucket: Path, snapshot: Path, repo_id: str, revision: str, variant: str,
                 source: Export | None, quiet: bool) -> Export:
    from embctl.plugin import human_size, info

    tmp = bucket.parent / f"{TMP_PREFIX}{variant}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=True)
    start = time.monotonic()
    what = f"{repo_id}@{revision[:8]}"
    if not quiet:
        info(f"{what} has no ONNX weights{_for(variant)}: "
             + ("exporting them with torch" if variant == "fp32" else "quantizing the export"))
    try:
        made = _convert(snapshot, tmp / MODEL_FILE, source)
        manifest = Manifest(repo_id, revision, variant, describe_files(tmp), made, time.time())
        write_manifest(tmp, manifest)
        os.replace(tmp, bucket)
        _fsync_dir(bucket.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (EmbctlError, KeyboardInterrupt, SystemExit)):
            raise
        message = (str(exc).strip().splitlines() or [""])[0][:300]
        raise EmbctlError(f"exporting {what} to ONNX ({variant}) failed: "
                          f"{type(exc).__name__}: {message}") from None
    if not quiet:
        info(f"exported {what} ({variant}, {human_size(manifest.size)}) in "
             f"{time.monotonic() - start:.1f} s to {bucket}")
    return Export(bucket / MODEL_FILE, manifest.sha256, variant)


def _convert(snapshot: Path, target: Path, source: Export | None) -> dict:
    """fp32 from the snapshot, or int8 from the fp32 export; the libraries kept quiet (their
    warnings and progress bars are not the user's business; a failure still raises), unless
    -v (embctl.quiet)."""
    import logging
    import warnings

    from embctl.plugin import verbose
    from embctl_onnx.exports import convert

    if verbose():
        if source is None:
            return convert.export_fp32(snapshot, target)
        return {**convert.quantize_int8(source.path, target), "from_sha256": source.sha256}
    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)  # onnxruntime.quantization warns on the root logger
        try:
            if source is None:
                _hush_transformers()
                return convert.export_fp32(snapshot, target)
            return {**convert.quantize_int8(source.path, target), "from_sha256": source.sha256}
        finally:
            root.setLevel(level)


def _hush_transformers() -> None:
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:  # an older transformers without these: only noisier
        pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def export_problems(bucket: Path) -> list[str]:
    """What is wrong with a bucket's files: each against its manifest's size and sha256
    (for ``verify``)."""
    from embctl_onnx.exports.layout import sha256_of

    try:
        manifest = read_manifest(bucket)
    except ManifestError as exc:
        return [str(exc)]
    problems = []
    for name, want in manifest.files.items():
        path = bucket / name
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{name} is missing")
            continue
        if size != want["size"]:
            problems.append(f"{name} is {size:,} bytes, expected {want['size']:,}")
        elif sha256_of(path) != want["sha256"]:
            problems.append(f"{name}: sha256 mismatch")
    return problems
