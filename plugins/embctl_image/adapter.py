"""The image backend's input adapter (``Backend.input_adapter``; the contract is in
embctl/embed/adapter.py): paths in, file bytes keyed, errors by line.

Records name image files (the ``--path-field``, default ``path``), relative to the input's
folder (``base``: the JSONL file's folder, the ``-i DIR`` folder, or the current directory for
stdin and the Python API; see inputs.py) or absolute.  A relative path that resolves outside
``base`` (``..`` or a symbolic link) is refused; an absolute path is the user's explicit
choice and is accepted.

For every chunk of records (one model batch) :meth:`ImageAdapter.prepare`:

1. reads each file and hashes its bytes (sha256): the cache key, so a renamed or copied file
   is a hit.  Missing, unreadable, zero-byte and outside files go to ``on_bad`` (fail: error
   with the line and path; skip: counted and dropped);
2. when the embedder can (``submit``/``compute``, as the image backend's does) and the file's
   vector is not cached, queues its decoding on the embedder's worker pool *before the model
   runs on the previous chunk*, so decoding runs beside the model;
3. runs the model on the chunk's decoded images and checks every vector (NaN, inf, zero norm);
   undecodable images and rejected vectors go to ``on_bad`` and are dropped, so they never
   reach the cache.

The pipeline's Vectorizer then finds the chunk's misses, gets the ready vectors back through
``payload`` (the embedder's ``embed`` passes :class:`Ready` vectors through) and commits them
as one batch.  Without a Vectorizer (dry run) only step 1 runs.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from embctl.plugin import InputAdapter

if TYPE_CHECKING:
    from embctl.plugin import Options, Record, VectorSource

#: Chunks whose decoding is queued ahead of the one on the model.
PREFETCH = 2


@dataclass(frozen=True)
class Ready:
    """A vector computed in ``prepare``, handed to ``Embedder.embed`` through ``payload``."""

    vector: Any  # float32 (dim,)


@dataclass
class Checked:
    """A record whose file was read: its path as the user wrote it, and its bytes' hash."""

    record: Record
    shown: str
    digest: bytes
    data: bytes


#: A chunk in flight: its readable records, the problems found so far, decoding jobs.
Pending = tuple[list[Checked], list[tuple[int, str]], dict[bytes, Future]]


class ImageAdapter(InputAdapter):
    kind = "image"

    def __init__(self, base_dir: str | os.PathLike | None = None,
                 path_field: str = "path") -> None:
        super().__init__("")
        self.base = Path(os.path.realpath(base_dir or os.getcwd()))
        self.path_field = path_field
        self._digest: dict[str, bytes] = {}  # resolved path -> sha256 of its bytes
        self._ready: dict[bytes, Any] = {}  # digest -> Ready vector for the Vectorizer

    # -- InputAdapter ----------------------------------------------------------------------

    def open(self, path: str, opts: Options) -> IO[bytes] | Iterable[bytes]:
        from embctl_image.inputs import open_input

        stream, base = open_input(path, opts, self.path_field)
        self.base = Path(os.path.realpath(base))
        return stream

    def key_bytes(self, item: str) -> bytes:
        digest = self._digest.get(item)
        if digest is None:  # not prepared (a direct caller): hash the file now
            digest = hashlib.sha256(Path(item).read_bytes()).digest()
        return b"sha256:" + digest

    def payload(self, item: str) -> Any:
        ready = self._ready.get(self._digest.get(item, b""))
        return ready if ready is not None else item

    def size(self, item: str) -> int:
        return 0  # batches keep input order: no length sorting for images

    # -- the chunked pass ------------------------------------------------------------------

    def prepare(self, windows: Iterable[list[Record]], vectorizer: VectorSource | None,
                on_bad: Callable[[int, str], None]) -> Iterator[list[Record]]:
        embedder = vectorizer.embedder if vectorizer is not None else None
        pipelined = callable(getattr(embedder, "compute", None)) and \
            callable(getattr(embedder, "submit", None))
        chunk_size = vectorizer.batch_size if vectorizer is not None else 256
        queue: deque[Pending] = deque()
        for chunk in _chunks(windows, chunk_size):
            self._forget_done(queue)
            checked, problems = self._check(chunk)
            jobs = self._submit(checked, vectorizer, embedder) if pipelined else {}
            queue.append((checked, problems, jobs))
            if len(queue) > PREFETCH:
                yield self._finish(queue.popleft(), embedder, on_bad)
        while queue:
            yield self._finish(queue.popleft(), embedder, on_bad)

    def _forget_done(self, queue: deque) -> None:
        """Drop what the Vectorizer has consumed (everything not in a queued chunk)."""
        keep = {c.digest for checked, _, _ in queue for c in checked}
        self._ready = {d: v for d, v in self._ready.items() if d in keep}
        self._digest = {p: d for p, d in self._digest.items() if d in keep}

    def _check(self, chunk: list[Record]) -> tuple[list[Checked], list[tuple[int, str]]]:
        """Resolve, read and hash each record's file; problems are reported later, in
        ``_finish``, so errors come out in input order."""
        out: list[Checked] = []
        bad: list[tuple[int, str]] = []
        for record in chunk:
            shown = record.text
            path, problem = self._resolve(shown)
            data = b""
            if problem is None:
                try:
                    data = Path(path).read_bytes()
                except IsADirectoryError:
                    problem = "is a directory, not an image file"
                except FileNotFoundError:
                    problem = "no such file"
                except OSError as exc:
                    problem = f"cannot read: {exc.strerror or exc}"
            if problem is None and not data:
                problem = "empty file (0 bytes)"
            if problem is not None:
                bad.append((record.line, f"{shown}: {problem}"))
                continue
            digest = hashlib.sha256(data).digest()
            record.text = path
            self._digest[path] = digest
            out.append(Checked(record, shown, digest, data))
        return out, bad

    def _resolve(self, shown: str) -> tuple[str, str | None]:
        given = Path(os.path.expanduser(shown))
        if given.is_absolute():
            return str(given), None
        full = os.path.realpath(self.base / given)
        try:
            inside = os.path.commonpath([full, str(self.base)]) == str(self.base)
        except ValueError:
            inside = False
        if not inside:
            return full, (f"outside {self.base} (relative paths must stay inside the input's "
                          "folder; give an absolute path to use another)")
        return full, None

    def _submit(self, checked: list[Checked], vectorizer: VectorSource | None,
                embedder: Any) -> dict[bytes, Future]:
        """Queue decoding of the chunk's distinct files whose vectors are not cached."""
        digests = list(dict.fromkeys(c.digest for c in checked))
        cached: set[bytes] = set()
        if vectorizer is not None and digests:  # lookup: {} without a cache
            keys = {vectorizer.key(b"sha256:" + d): d for d in digests}
            cached = {keys[k] for k in vectorizer.lookup(list(keys))}
        jobs: dict[bytes, Future] = {}
        for item in checked:
            if item.digest not in cached and item.digest not in jobs \
                    and item.digest not in self._ready:
                jobs[item.digest] = embedder.submit(item.data)
            item.data = b""  # the worker has its own reference; free it when it is done
        return jobs

    def _finish(self, pending: Pending, embedder: Any, on_bad: Callable[[int, str], None]
                ) -> list[Record]:
        """Wait for the chunk's decoding, run the model, check the vectors; report what
        failed (in line order) and return the chunk's other records, in input order."""
        checked, problems, jobs = pending
        failed: dict[bytes, str] = {}
        digests: list[bytes] = []
        crops: list[Any] = []
        errors = getattr(embedder, "decode_errors", ()) if embedder is not None else ()
        for digest, future in jobs.items():
            try:
                crops.append(future.result())
                digests.append(digest)
            except errors as exc:
                failed[digest] = str(exc)
        if crops:
            vectors = embedder.compute(crops)
            check = getattr(embedder, "problems", None)
            verdicts = check(vectors) if callable(check) else [None] * len(digests)
            for digest, vector, verdict in zip(digests, vectors, verdicts, strict=True):
                if verdict:
                    failed[digest] = f"{verdict}; not cached"
                else:
                    self._ready[digest] = Ready(vector)
        for item in checked:
            if item.digest in failed:
                problems.append((item.record.line, f"{item.shown}: {failed[item.digest]}"))
        for line, message in sorted(problems):
            on_bad(line, message)
        return [item.record for item in checked if item.digest not in failed]


def _chunks(windows: Iterable[list[Record]], size: int) -> Iterator[list[Record]]:
    for window in windows:
        for i in range(0, len(window), size):
            yield window[i:i + size]


def input_adapter(options: dict[str, Any]) -> ImageAdapter:
    """``Backend.input_adapter`` for ``image``: options hold ``path_field`` (``--path-field``;
    default ``path``).  ``prefix`` is refused by :meth:`ImageAdapter.open` (the CLI), ignored
    by the Python API, as before."""
    return ImageAdapter(path_field=options.get("path_field") or "path")
