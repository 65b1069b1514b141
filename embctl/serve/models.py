"""The models the embeddings API serves: resolved from a request's ``model``, loaded lazily,
one copy each, and listed for ``GET /v1/models``.

``model`` is any embctl reference or alias, resolved as ``embctl embed`` resolves it, with two
differences that make sense for a server: a local directory is never a model (a request must
not name paths on this machine), and a Hub model must already be in the cache (the server
never downloads a model because a client asked; ``embctl pull`` it, or use the mirror's
``--upstream``).  Backends without Hub models (``openai:``) are served as they are.

Each distinct model (backend, repo, revision and the options that change its vectors) gets
one :class:`embctl.serve.batcher.Worker`.  Two first requests for the same model start it
once: the second awaits the first's start.

``dimensions``: for a model that declares Matryoshka dimensions (``embctl.models.matryoshka``)
of a backend with ``truncate_dim``, the server computes the full vectors, cached once, and
truncates and renormalizes them, so every ``dimensions`` shares one model and one cache; a
backend that declares ``dimensions`` (``openai:``) is asked for them (a worker per value).
Any other model refuses ``dimensions`` other than its own with a 400: cutting its vectors
would make worse ones without a word.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embctl.errors import UsageError
from embctl.serve.batcher import Worker, shutting_down
from embctl.serve.openai_shapes import ApiError

if TYPE_CHECKING:
    from embctl.embed.session import Session, Target
    from embctl.serve.config import ServeConfig
    from embctl.serve.metrics import Metrics

#: Inputs one worker window takes from its queue at most (several requests together).
GATHER = 256
#: After SIGTERM: seconds the requests waiting for a model get before they are answered 503
#: (less than uvicorn's grace, embctl.serve.server.GRACE_S: they answer before it cancels).
DRAIN_S = 6.0
#: Seconds after SIGTERM by which every worker must have left its model; the server then
#: exits without waiting for one still in a batch (embctl.serve.server).  Exiting the
#: interpreter with torch loaded takes up to a second more: the total stays under 10 s.
STOP_S = 8.0
#: Seconds the workers get to stop when the server stops without a signal.
CLOSE_S = 1.5


@dataclass(frozen=True)
class Plan:
    """How a request's ``model`` and ``dimensions`` are served."""

    worker: Worker
    truncate: int | None  # dimensions the server cuts each vector to (then renormalizes)


class ModelPool:
    def __init__(self, config: ServeConfig, max_queue: int) -> None:
        from embctl.paths import hub_cache_dir

        self.config = config
        self.cache = hub_cache_dir(config.cache_dir)
        self.max_queue = max_queue
        self.workers: dict[tuple, Worker] = {}
        self._starting: dict[tuple, asyncio.Task] = {}
        self._declared: dict[Path, bool] = {}  # snapshot: declares Matryoshka dimensions
        self.closed = False
        self._all: list[Worker] = []  # every worker started: open, or still opening
        self._cut: asyncio.Future | None = None  # done: waiting requests get their 503
        self._waiting: set[asyncio.Future] = set()  # the requests' futures being awaited
        self._stopped_at: float | None = None  # time.monotonic() of the first signal
        self.metrics: Metrics | None = None  # the app's (embctl.serve.metrics), for workers

    async def get(self, ref: str, dimensions: int | None) -> Plan:
        target, options, mode = await asyncio.to_thread(self._resolve, ref, dimensions)
        model = target.model
        key = (model.backend, model.repo_id, model.revision, tuple(sorted(options.items())))
        worker = self.workers.get(key)
        if worker is None:
            if self.closed:
                raise shutting_down()
            task = self._starting.get(key)
            if task is None:
                task = asyncio.ensure_future(self._start(key, ref, target, options))
                task.add_done_callback(_retrieved)  # its waiters may all have left
                self._starting[key] = task
            worker = await self.wait(task, shared=True)
        truncate = None
        if dimensions is not None and mode != "backend":
            if worker.dim and dimensions > worker.dim:
                raise ApiError(400, f"{ref} makes {worker.dim}-dimensional vectors: "
                               f"'dimensions' must be at most {worker.dim}", param="dimensions")
            if dimensions != worker.dim:
                if mode == "undeclared":
                    raise ApiError(400, f"{ref} declares no Matryoshka dimensions (in its "
                                   "sentence-transformers config or model card): cutting its "
                                   f"vectors to {dimensions} would make worse ones; ask for "
                                   f"{worker.dim}, or cut them on purpose with `embctl embed "
                                   "--truncate-dim`", param="dimensions")
                if mode != "truncate":
                    raise ApiError(400, f"{ref} does not support 'dimensions' (only Matryoshka "
                                   "models do: backends with a truncate_dim option)",
                                   param="dimensions")
                truncate = dimensions
        return Plan(worker, truncate)

    async def _start(self, key: tuple, ref: str, target: Target, options: dict[str, Any]
                     ) -> Worker:
        worker = Worker(ref, lambda: self._open(target, options), max_queue=self.max_queue,
                        gather=GATHER, verbose=self.config.access_log, metrics=self.metrics)
        self._all.append(worker)  # stopped at shutdown, even while it opens
        try:
            await worker.start()
        except UsageError as exc:
            self._all.remove(worker)  # its thread has ended
            raise ApiError(400, str(exc), param="model") from None
        except Exception as exc:  # noqa: BLE001 - a broken model is a 500, not a crash
            from embctl.serve.batcher import model_failure

            self._all.remove(worker)
            raise model_failure(ref, exc) from None
        finally:
            self._starting.pop(key, None)
        self.workers[key] = worker
        return worker

    def _open(self, target: Target, options: dict[str, Any]) -> Session:
        """In the worker thread: the model and its vector cache, as ``embctl embed`` opens
        them (the same namespace: what the CLI computed is a hit here, and back)."""
        from embctl.embed.session import open_session
        from embctl.options import load_options

        values = load_options(target.backend, given=options)
        return open_session(target, {**values, "quiet": True,
                                     "cache_dir": os.fspath(self.cache)}, cache="write")

    def _resolve(self, ref: str, dimensions: int | None) -> tuple[Target, dict[str, Any], str]:
        """(target, load options, dimensions mode) for a request's ``model``; 404 when it
        names nothing this server can embed with."""
        from embctl.embed.adapter import adapter_for
        from embctl.embed.session import Target
        from embctl.registry import get_backend, resolve

        try:
            model = resolve(ref)  # never a local directory
            backend = get_backend(model.backend)
        except UsageError as exc:
            raise not_found(ref, str(exc)) from None
        if not backend.overrides("load") or backend.input_kind != "text":
            raise not_found(ref, f"backend {backend.name!r} does not embed text")
        if backend.hub and not self.config.upstream and not self._servable(model):
            from embctl.models.lookup import did_you_mean

            hint = did_you_mean(ref, self.cache, every_alias=False)
            raise not_found(ref, f"not in this server's cache for the {backend.name} "
                            f"backend{hint} (to serve it: embctl pull {ref} on the server)")
        names = {o.name for o in backend.options}
        options: dict[str, Any] = {}
        mode = "truncate" if "truncate_dim" in names else "none"
        if mode == "truncate" and dimensions is not None and not self._matryoshka(model):
            mode = "undeclared"
        if "dimensions" in names:
            mode = "backend"
            if dimensions is not None:
                options["dimensions"] = dimensions
        try:
            target = Target(model, backend, adapter_for(backend, {}))
        except UsageError as exc:
            raise not_found(ref, str(exc)) from None
        return target, options, mode

    def _matryoshka(self, model) -> bool:
        """Whether the cached model declares Matryoshka dimensions (read once a snapshot)."""
        from embctl.models.locate import cached_snapshot
        from embctl.models.matryoshka import declares_matryoshka

        found = cached_snapshot(model, self.cache)
        if found is None:
            return False
        if found[0] not in self._declared:
            self._declared[found[0]] = declares_matryoshka(found[0])
        return self._declared[found[0]]

    def _rows(self) -> list:
        """What this server can embed with right now: the rows ``embctl ls`` shows for
        models and plugin stores (not vector caches), complete, of backends that embed text."""
        from embctl.registry import backends
        from embctl.stores import open_stores, scan_all

        usable = {name for name, b in backends().items()
                  if b.overrides("load") and b.input_kind == "text"}
        stores = [s for s in open_stores(self.cache, listing=True) if s.kind != "vectors"]
        return [e for e in scan_all(stores) if e.status == "ok" and e.backend in usable]

    def _servable(self, model) -> bool:
        """``model`` is in the cache for its backend (a worker of it running: it was)."""
        from embctl.models.hub import is_commit

        if any(key[:2] == (model.backend, model.repo_id) for key in self.workers):
            return True
        return any(e.backend == model.backend
                   and model.repo_id in (e.repo_id or "").split("+")
                   and (not is_commit(model.revision) or e.revision == model.revision)
                   for e in self._rows())

    def listing(self, detail: bool = False) -> list[dict[str, Any]]:
        """``GET /v1/models``: exactly what requests can name now: the cached models that
        can embed text, one per backend (by the name ``embctl ls`` shows: the alias when
        pulled as one), and the other models being served.  ``detail`` adds ``backend``,
        ``revision`` and ``size_bytes`` (for Ollama's ``GET /api/tags``)."""
        rows, seen = [], set()
        for entry in self._rows():
            if entry.ref in seen:
                continue
            seen.add(entry.ref)
            rows.append({"id": entry.ref, "object": "model", "created": int(
                entry.last_used or 0), "owned_by": (entry.repo_id or "embctl").split("/")[0],
                "dim": entry.dim, **({"backend": entry.backend, "revision": entry.revision,
                                      "size_bytes": entry.size_bytes} if detail else {})})
        for worker in list(self.workers.values()):
            if worker.name not in seen:
                seen.add(worker.name)
                rows.append({"id": worker.name, "object": "model", "created": 0,
                             "owned_by": "embctl", "dim": worker.dim or None,
                             **({"backend": None, "revision": None, "size_bytes": 0}
                                if detail else {})})
        return rows

    # -- shutdown ----------------------------------------------------------------------------

    async def wait(self, future: asyncio.Future, *, shared: bool = False) -> Any:
        """``future``'s result, or the 503 ``shutting_down`` once the shutdown stops waiting
        (:meth:`stop`).  A request's own future gets that 503 as its result (the worker's
        late answer is then dropped); a ``shared`` one (a model's start, a task) is left to
        its other waiters."""
        if self._cut is not None and self._cut.done():
            if not shared:
                future.cancel()  # the worker's answer, if any, is dropped
            raise shutting_down()
        if not shared:  # the common case: no task, no callback, a set entry
            self._waiting.add(future)
            try:
                return await future
            finally:
                self._waiting.discard(future)
        if self._cut is None:
            self._cut = asyncio.get_running_loop().create_future()
        await asyncio.wait((future, self._cut), return_when=asyncio.FIRST_COMPLETED)
        if not future.done():
            raise shutting_down()
        return future.result()

    def stop(self, hurry: bool = False) -> None:
        """On the event loop, at SIGTERM (``hurry``: a second signal): no new model or
        request (503); the requests waiting get until DRAIN_S after the first signal (none
        when ``hurry``), then their 503, and each worker stops after the batch it is in."""
        import time

        self.closed = True
        for worker in self._all:
            worker.closing = True
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
            asyncio.get_running_loop().call_later(DRAIN_S, self._stop_waiting)
        if hurry:
            self._stop_waiting()

    def _stop_waiting(self) -> None:
        if self._cut is None:
            self._cut = asyncio.get_running_loop().create_future()
        if not self._cut.done():
            self._cut.set_result(None)
        for future in self._waiting:
            if not future.done():
                future.set_exception(shutting_down())
        for worker in self._all:
            worker.abandon()

    def close(self) -> list[str]:
        """Blocking, after uvicorn's grace: every worker stops after its batch and closes its
        session (its vector cache commits), by STOP_S after the first signal (CLOSE_S from
        now without one).  -> the names of the workers still inside their model then."""
        import time

        self.closed = True
        now = time.monotonic()
        deadline = now + CLOSE_S if self._stopped_at is None else self._stopped_at + STOP_S
        for worker in self._all:
            worker.abandon()
        return [worker.name for worker in self._all
                if not worker.close(max(0.2, deadline - time.monotonic()))]


def _retrieved(task: asyncio.Task) -> None:
    """A model's start that fails once the shutdown answered its waiters (503) has nobody
    to take its error: take it here, or asyncio logs it as never retrieved."""
    if not task.cancelled():
        task.exception()


def not_found(ref: str, why: str) -> ApiError:
    return ApiError(404, f"model '{ref}' not found: {why}",
                    param="model", code="model_not_found")
