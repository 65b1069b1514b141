"""``embctl pull matrix:A[+B...]``: fetch only the token-embedding tensor of each source.

Per source: resolve the revision to a commit (one API call), fetch the config and tokenizer
files with ``hf_hub_download``, read the index (sharded) and one shard header, then range-read
the tensor's bytes.  Several sources are checked (same vocabulary size; same tokenizer where it
can be told) before any tensor byte moves, then concatenated along the hidden dimension.
A weight file the Hugging Face cache holds intact is read from there instead, offline too
(the cached revision): bytes the cache holds are never fetched again (``cached``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embctl.plugin import (
    EmbctlError,
    HubUnreachable,
    Listing,
    Model,
    UsageError,
    hub_cache_dir,
    hub_error,
    import_hf,
    is_offline,
    is_safe_repo_path,
)
from embctl_matrix import cached as from_cache
from embctl_matrix import locate, remote
from embctl_matrix.matrices import store
from embctl_matrix.matrices.format import ITEMSIZE, SHA_PLACEHOLDER, encode_header, tensors
from embctl_matrix.matrices.paths import matrices_dir
from embctl_matrix.matrices.writer import PendingFile
from embctl_matrix.tokenizer import SIDE_FILES, fingerprint, same_vocabulary

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
DTYPES = ("F32", "F16", "BF16")


@dataclass
class Located:
    source: store.Source
    file: str  # the shard holding the tensor
    start: int  # absolute offset of the tensor's first byte in that file
    nbytes: int
    shard_size: int
    side_files: dict[str, Path]
    fingerprint: str | None
    local: Path | None = None  # the shard in the Hugging Face cache, hash checked


def pull_matrix(model: Model, options: dict[str, Any]) -> dict[str, Any]:
    """Backend ``pull``: returns the JSON summary the CLI prints."""
    began = time.monotonic()
    if options.get("from_dir"):
        raise UsageError(f"{model.ref}: --from is not supported for matrices")
    repo_ids = model.repo_id.split("+")
    if len(set(repo_ids)) != len(repo_ids):
        raise UsageError(f"{model.ref}: the same model is named twice")
    wanted = _tensor_option(model.ref, options.get("tensor"), len(repo_ids))
    ref = store.display_ref(repo_ids, model.revision)
    cache_dir = Path(options.get("cache_dir") or hub_cache_dir())
    offline = is_offline()
    if offline:
        info = store.find_matrix(ref, tensor=options.get("tensor"))
        if info is not None:
            return _summary(info, began, downloaded=0, up_to_date=True, offline=True)
        found = [from_cache.offline_listing(cache_dir, r, model.revision) for r in repo_ids]
        if None in found:
            raise HubUnreachable.offline(ref)
        listings = [x for x in found if x is not None]
    else:
        from embctl.plugin import list_revision

        listings = [list_revision(r, model.revision, ref) for r in repo_ids]
    cached = _cached(repo_ids, [x.commit for x in listings], wanted)
    if cached is not None:
        return _summary(cached, began, downloaded=0, up_to_date=True)
    counter = remote.Counter()
    side_bytes = 0
    located = []
    for listing, tensor in zip(listings, wanted, strict=True):
        files, fetched = _side_files(ref, listing, cache_dir)
        side_bytes += fetched
        located.append(_locate(ref, listing, tensor, files, cache_dir, counter))
    dtype = _check_compatible(ref, located)
    info = _build(ref, model.revision, located, dtype, counter,
                  quiet=bool(options.get("quiet")), explicit=bool(options.get("tensor")))
    _keep_tokenizer(info, located[0])
    summary = _summary(info, began, downloaded=counter.header_bytes + counter.tensor_bytes,
                       up_to_date=False, offline=offline, from_cache=counter.cache_bytes)
    summary.update(header_bytes=counter.header_bytes, tensor_bytes=counter.tensor_bytes,
                   cache_bytes=counter.cache_bytes, side_file_bytes=side_bytes,
                   shard_bytes=sum(x.shard_size for x in located))
    return summary


def _tensor_option(ref: str, value: str | None, n: int) -> list[str | None]:
    if not value:
        return [None] * n
    names = [v.strip() for v in value.split(",")]
    if len(names) == 1:
        return names * n
    if len(names) != n or not all(names):
        raise UsageError(f"{ref}: --tensor takes one name, or one per model ({n}), "
                         "separated by commas")
    return list(names)


def _cached(repo_ids: list[str], commits: list[str], wanted: list[str | None]
            ) -> store.MatrixInfo | None:
    hits = [i for i in store.cached_matrices()
            if i.sources == repo_ids and i.revisions == commits
            and all(w is None or w == t for w, t in zip(wanted, i.tensors, strict=True))]
    return max(hits, key=lambda i: i.created) if hits else None


def _side_files(ref: str, listing: Listing, cache_dir: Path) -> tuple[dict[str, Path], int]:
    """Download config/tokenizer files the repo has; return their paths and new bytes."""
    hf = import_hf()
    paths: dict[str, Path] = {}
    fetched = 0
    for name in SIDE_FILES:
        if name not in listing.files:
            continue
        cached = hf.try_to_load_from_cache(listing.repo_id, name, cache_dir=str(cache_dir),
                                           revision=listing.commit)
        try:
            local = hf.hf_hub_download(listing.repo_id, name, revision=listing.commit,
                                       cache_dir=str(cache_dir))
        except Exception as exc:
            raise hub_error(ref, exc) from None
        if not isinstance(cached, str):
            fetched += listing.files[name].size
        paths[name] = Path(local)
    return paths, fetched


def _locate(ref: str, listing: Listing, wanted: str | None, files: dict[str, Path],
            cache_dir: Path, counter: remote.Counter) -> Located:
    repo_id, commit = listing.repo_id, listing.commit
    headers: dict[str, remote.RemoteHeader] = {}
    weights = from_cache.CachedWeights(ref, cache_dir, listing)

    def header(path: str) -> remote.RemoteHeader:
        if path not in headers:
            local = weights.file(path)
            if local is not None:
                headers[path] = from_cache.read_header(ref, local, path, counter)
            elif is_offline():
                raise HubUnreachable(ref, "HF_HUB_OFFLINE=1 forbids downloading it",
                                     f"{ref}: {repo_id}'s {path} is not in the cache intact, "
                                     "and HF_HUB_OFFLINE=1 forbids downloading it")
            else:
                headers[path] = remote.read_header(ref, repo_id, path, commit, counter)
        return headers[path]

    if SINGLE in listing.files:
        names = list(tensors(header(SINGLE).header))
        weight_map = dict.fromkeys(names, SINGLE)
    elif INDEX in listing.files:
        weight_map = _weight_map(ref, listing, cache_dir)
        names = list(weight_map)
    else:
        raise EmbctlError(f"{ref}: {repo_id} has no {SINGLE} or {INDEX} "
                          "(only safetensors checkpoints are supported)")

    def shapes() -> dict[str, tuple[str, list[int]]]:
        found: dict[str, tuple[str, list[int]]] = {}
        for shard in sorted(set(weight_map.values())):
            found.update(header(shard).shapes())
        return found

    name = locate.choose(f"{ref} ({repo_id})", names, wanted, shapes)
    shard = weight_map[name]
    if not is_safe_repo_path(shard) or shard not in listing.files:
        raise EmbctlError(f"{ref}: the index names shard {shard!r}, which {repo_id} lacks")
    head = header(shard)
    info = tensors(head.header).get(name)
    if info is None:
        raise EmbctlError(f"{ref}: {shard} has no tensor {name!r} although the index says so")
    dtype, shape = info.get("dtype"), list(info.get("shape") or [])
    if len(shape) != 2:
        raise EmbctlError(locate.candidates_message(
            f"{ref} ({repo_id})", f"{name} has shape {shape}, not (vocab, hidden)", shapes()))
    if dtype not in DTYPES:
        raise EmbctlError(f"{ref}: {name} is {dtype}; only F32, F16 and BF16 are supported")
    begin, end = (int(x) for x in info["data_offsets"])
    nbytes = shape[0] * shape[1] * ITEMSIZE[dtype]
    size = head.file_size or listing.files[shard].size
    if end - begin != nbytes or begin < 0 or head.data_offset + end > size:
        raise EmbctlError(f"{ref}: {shard}'s header gives bad offsets for {name}")
    source = store.Source(repo_id, commit, name, dtype, (shape[0], shape[1]))
    return Located(source, shard, head.data_offset + begin, nbytes, size, files,
                   fingerprint(files), weights.file(shard))


def _weight_map(ref: str, listing: Listing, cache_dir: Path) -> dict[str, str]:
    hf = import_hf()
    try:
        path = hf.hf_hub_download(listing.repo_id, INDEX, revision=listing.commit,
                                  cache_dir=str(cache_dir))
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError:
        raise EmbctlError(f"{ref}: {listing.repo_id}'s {INDEX} is not valid JSON") from None
    except Exception as exc:
        raise hub_error(ref, exc) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise EmbctlError(f"{ref}: {listing.repo_id}'s {INDEX} has no weight_map")
    return {str(k): str(v) for k, v in weight_map.items()}


def _check_compatible(ref: str, located: list[Located]) -> str:
    """The output dtype; errors when the sources cannot be concatenated row by row."""
    if len(located) > 1:
        sizes = {x.source.shape[0] for x in located}
        if len(sizes) > 1:
            shown = ", ".join(f"{x.source.repo_id} {x.source.shape[0]}" for x in located)
            raise EmbctlError(f"{ref}: vocabulary sizes differ ({shown}); only matrices with "
                              "the same vocabulary can be concatenated")
        if same_vocabulary([x.fingerprint for x in located]) is False:
            shown = ", ".join(f"{x.source.repo_id} {x.fingerprint}" for x in located)
            raise EmbctlError(f"{ref}: the tokenizers differ ({shown}); the same row would "
                              "mean different tokens")
    dtypes = {x.source.dtype for x in located}
    return dtypes.pop() if len(dtypes) == 1 else "F32"


def _build(ref: str, revision: str | None, located: list[Located], dtype: str,
           counter: remote.Counter, *, quiet: bool, explicit: bool) -> store.MatrixInfo:
    from filelock import FileLock

    from embctl.plugin import ByteProgress

    sources = [x.source for x in located]
    final = store.matrix_path(sources)
    shape = (sources[0].shape[0], sum(s.shape[1] for s in sources))
    prints = [x.fingerprint for x in located]
    locks = matrices_dir() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)

    def header(sha: str, created: int) -> bytes:
        meta = store.build_metadata(sources, requested_revision=revision, dtype=dtype,
                                    shape=shape, sha256=sha, tokenizer=prints, created=created,
                                    explicit_tensor=explicit)
        return encode_header(store.TENSOR, dtype, list(shape), meta)

    with FileLock(str(locks / f"{final.name}.lock")):
        if final.is_file():  # a concurrent pull finished it while we waited
            return store.read_info(final)
        nbytes = shape[0] * shape[1] * ITEMSIZE[dtype]
        todo: list[tuple[PendingFile, Located, int]] = []
        inputs: list[tuple[Path, int]] = []  # (file, data offset) of each source's rows
        parts: list[Path] = []
        if len(located) == 1:
            part = PendingFile(final, nbytes, header(SHA_PLACEHOLDER, 0))
            todo.append((part, located[0], part.open()))
        for i, x in enumerate(located if len(located) > 1 else []):
            single = _cached([x.source.repo_id], [x.source.commit], [x.source.tensor])
            if single is not None:  # pulled on its own before: no need to fetch it again
                inputs.append((single.path, single.data_offset))
                continue
            part = PendingFile(final.with_name(f"{final.name}.part{i}"), x.nbytes,
                               hashed=False)
            inputs.append((part.path, 0))
            parts.append(part.path)
            if part.path.is_file() and part.path.stat().st_size == x.nbytes:
                continue  # a finished part from an interrupted pull
            todo.append((part, x, part.open()))
        need = sum(x.nbytes - have for _, x, have in todo)
        label = f"pulling {ref} ({dtype} {list(shape)})"
        with ByteProgress(label, need, quiet=quiet) as progress:
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                done += n
                progress.update(done)

            for part, x, _ in todo:
                try:
                    if x.local is not None:
                        from_cache.copy_range(ref, x.local, x.start, part, counter, advance)
                    else:
                        remote.download_range(ref, x.source.repo_id, x.file,
                                              x.source.commit, x.start, part, counter,
                                              advance)
                finally:
                    part.close()
                part.open()  # reopen to re-check what is on disk before committing
                if len(located) == 1:
                    part.commit(header(part.sha256, int(time.time())))
                else:
                    part.commit()
        if len(located) > 1:
            _assemble(final, located, inputs, dtype, shape, header)
            for path in parts:
                path.unlink(missing_ok=True)
    return store.read_info(final)


def _assemble(final: Path, located: list[Located], inputs: list[tuple[Path, int]],
              dtype: str, shape: tuple[int, int], header) -> None:
    """Interleave the parts row by row into the final file, in chunks (little memory)."""
    import numpy as np

    from embctl_matrix.matrices.arrays import CHUNK_BYTES, RAW_DTYPE, to_float

    rows = shape[0]
    out_row = shape[1] * ITEMSIZE[dtype]
    step = max(1, CHUNK_BYTES // out_row)
    pending = PendingFile(final, rows * out_row, header(SHA_PLACEHOLDER, 0))
    pending.open(resume=False)
    handles = []
    for path, offset in inputs:
        handles.append(open(path, "rb"))
        handles[-1].seek(offset)
    try:
        for start in range(0, rows, step):
            n = min(step, rows - start)
            blocks = []
            for f, x in zip(handles, located, strict=True):
                width = x.source.shape[1]
                buf = f.read(n * width * ITEMSIZE[x.source.dtype])
                arr = np.frombuffer(buf, dtype=RAW_DTYPE[x.source.dtype]).reshape(n, width)
                if x.source.dtype != dtype:
                    arr = np.ascontiguousarray(to_float(arr, x.source.dtype), dtype=np.float32)
                blocks.append(arr.view(np.uint8).reshape(n, -1))
            pending.write(np.concatenate(blocks, axis=1).reshape(-1).data)
        pending.commit(header(pending.sha256, int(time.time())))
    except BaseException:
        pending.discard()
        raise
    finally:
        for f in handles:
            f.close()


def _keep_tokenizer(info: store.MatrixInfo, first: Located) -> None:
    """Copy the first source's tokenizer.json next to the matrix: embed then needs no model."""
    src = first.side_files.get("tokenizer.json")
    if src is not None and not info.tokenizer_path.is_file():
        tmp = info.tokenizer_path.with_name(f".{info.tokenizer_path.name}.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(info.tokenizer_path)


def _summary(info: store.MatrixInfo, began: float, *, downloaded: int, up_to_date: bool,
             offline: bool = False, from_cache: int = 0) -> dict[str, Any]:
    from embctl.plugin import human_size

    size = info.path.stat().st_size
    name = f"{info.ref} ({info.dtype} {list(info.shape)}, {human_size(info.nbytes)})"
    if up_to_date:
        how = " (offline, not checked for updates)" if offline else ""
        message = f"{name} is up to date{how}: nothing transferred"
    else:
        read = f", {human_size(from_cache)} read from the cache" if from_cache else ""
        message = (f"pulled {name}: {human_size(downloaded)} transferred from weight "
                   f"files{read} in {time.monotonic() - began:.1f}s")
    return {
        "ref": info.ref, "backend": "matrix", "repo_id": "+".join(info.sources),
        "revision": "+".join(info.revisions), "revisions": info.revisions,
        "tensors": info.tensors, "dtype": info.dtype, "shape": list(info.shape),
        "sha256": info.sha256, "path": str(info.path), "size_bytes": size,
        "downloaded_bytes": downloaded, "up_to_date": up_to_date, "offline": offline,
        "seconds": round(time.monotonic() - began, 3), "message": message,
    }
