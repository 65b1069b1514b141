"""What ``verify``, ``rm`` and ``rm --prune`` do to ONNX exports.

``verify`` hashes each file against the bucket's manifest.  ``--repair`` deletes a bad export
(or an interrupted one) and, when the snapshot it came from is still in the Hub cache and
torch can be imported, exports it again; otherwise the export is dropped, and the next
``embctl pull onnx:REF`` makes it again.  Deleting takes the bucket's export lock, so it never
pulls an export out from under a process writing it.

When a repair of the model replaces files an export was made from (``rebuild``: the
Transformer's config and weights, ``modules.json``), the export is made again where torch can
be imported; elsewhere it is marked stale (``layout.STALE``): kept, listed, never used, and
made again by the next ``verify --repair`` or ``pull onnx:REF`` with torch.  An export made
from none of the replaced files is left as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from embctl.plugin import EmbctlError, Entry
from embctl_onnx.exports.scan import ExportCheck, snapshot_of


def _lock(entry: Entry):
    from embctl_onnx.exported import _locked

    return _locked(str(entry.repo_id), str(entry.revision), str(entry.extra.get("variant")),
                    True)


def drop(entry: Entry) -> None:
    """Delete an export (or an interrupted one's folder), under its bucket's lock when it has
    a proper key."""
    from embctl_onnx.exports.layout import check_key

    path = Path(entry.path)
    try:
        check_key(str(entry.repo_id), str(entry.revision), str(entry.extra.get("variant")))
        keyed = entry.status != "incomplete"  # an interrupted export's writer is dead
    except ValueError:
        keyed = False
    if keyed:
        with _lock(entry):
            shutil.rmtree(path, ignore_errors=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
    drop_empty(path.parent)


def drop_empty(folder: Path) -> None:
    """The revision and repo folders left empty."""
    for parent in (folder, folder.parent):
        try:
            parent.rmdir()
        except OSError:
            return


def check_export(entry: Entry, cache_dir: Path | None, *, repair: bool) -> ExportCheck:
    from embctl_onnx.exported import export_problems

    check = ExportCheck(entry)
    if entry.status == "incomplete":
        check.problems.append("an interrupted export (nothing reads it; `embctl rm --prune` "
                              "deletes it)")
    else:
        check.problems += export_problems(Path(entry.path))
    if entry.status == "stale" and not check.problems:
        files = entry.extra.get("stale") or ["a file"]
        check.problems.append(f"stale: made from {', '.join(files)} before a repair replaced "
                              "it, and not used until it is exported again")
        if repair:
            _remake(check, cache_dir, list(entry.extra.get("stale") or []))
        else:
            check.outcome = _hint(entry)
        return check
    if check.problems and repair:
        _repair(check, cache_dir)
    return check


def made_from(snapshot: Path | None, paths: tuple[str, ...] | list[str]) -> list[str]:
    """Those of ``paths`` (repo files) an export is made from: ``modules.json``, and the
    config and weights of the Transformer's folder (``transformers.AutoModel`` reads them;
    the tokenizer and the pooling config are read from the snapshot when embedding)."""
    from embctl_onnx.exports.convert import transformer_folder

    top = ""
    if snapshot is not None:
        folder = transformer_folder(snapshot)
        top = "" if folder == snapshot else folder.relative_to(snapshot).as_posix()
    out = []
    for path in paths:
        folder, _, name = path.rpartition("/")
        if path == "modules.json" or folder == top and (
                name == "config.json" or name.endswith((".safetensors", ".bin", ".index.json"))):
            out.append(path)
    return out


def rebuild(entries: list[Entry], cache_dir: Path | None, repo_id: str, commit: str,
            paths: tuple[str, ...]) -> list[ExportCheck]:
    """The exports of ``repo_id@commit`` made from any of ``paths`` (files a repair just
    replaced): made again, or marked stale where they cannot be (fp32 first: int8 is
    quantized from it)."""
    checks = []
    order = {"fp32": 0, "int8": 1}
    mine = [e for e in entries if e.repo_id == repo_id and e.revision == commit
            and e.status in ("ok", "stale")]
    for entry in sorted(mine, key=lambda e: order.get(str(e.extra.get("variant")), 2)):
        snapshot = snapshot_of(cache_dir, entry) if cache_dir is not None else None
        used = made_from(snapshot, paths)
        if not used:
            continue  # made from none of them: left as it is
        check = ExportCheck(entry, [f"made from {', '.join(used)}, which the repair "
                                    "replaced"])
        _remake(check, cache_dir, used)
        checks.append(check)
    return checks


def _remake(check: ExportCheck, cache_dir: Path | None, used: list[str]) -> None:
    """Export again (torch there, and the snapshot) or mark stale (no torch)."""
    from embctl_onnx.exports.convert import missing_for
    from embctl_onnx.exports.layout import mark_stale

    entry = check.entry
    if missing_for(str(entry.extra.get("variant"))):
        with _lock(entry):
            mark_stale(Path(entry.path), used)
        check.outcome = "marked stale: " + _hint(entry)
        return
    _repair(check, cache_dir)


def _hint(entry: Entry) -> str:
    from embctl_onnx.exports.convert import INSTALL

    return (f"exporting it again needs torch ({INSTALL}), then `embctl verify {entry.ref} "
            "--repair`")


def _repair(check: ExportCheck, cache_dir: Path | None) -> None:
    entry = check.entry
    if _writing(entry):
        check.outcome = "an export is writing it now; left alone"
        return
    drop(entry)
    check.repaired = True
    if entry.status == "incomplete":
        check.outcome = "deleted"
        return
    snapshot = snapshot_of(cache_dir, entry) if cache_dir is not None else None
    variant = str(entry.extra.get("variant"))
    if snapshot is None:
        check.outcome = (f"deleted; the snapshot is gone: `embctl pull {entry.ref}"
                         f"{'' if variant == 'fp32' else ' --variant ' + variant}` exports it "
                         "again")
        return
    from embctl_onnx.exported import export_model

    try:
        export_model(snapshot, str(entry.repo_id), str(entry.revision), variant, quiet=True)
    except EmbctlError as exc:
        check.outcome = f"deleted; exporting it again failed: {exc}"
        return
    check.outcome = "deleted and exported again"


def _writing(entry: Entry) -> bool:
    """An interrupted-looking export whose bucket lock is held: one is being written now."""
    if entry.status != "incomplete":
        return False
    from embctl_onnx.exported import export_lock
    from embctl_onnx.exports.layout import check_key

    try:
        check_key(str(entry.repo_id), str(entry.revision), str(entry.extra.get("variant")))
    except ValueError:
        return False
    from filelock import Timeout

    lock = export_lock(str(entry.repo_id), str(entry.revision), str(entry.extra.get("variant")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def prunable(entry: Entry, cache_dir: Path | None) -> bool:
    """What ``rm --prune`` removes: an interrupted export nobody is writing, an export whose
    snapshot has left the Hub cache."""
    if entry.status == "incomplete":
        return not _writing(entry)
    return cache_dir is not None and snapshot_of(cache_dir, entry) is None

