"""One worker thread per loaded model: requests from every client are batched together, off
the event loop.

The handlers put each request's texts on the worker's bounded queue (full: 429) and await a
future.  The worker thread takes the first request waiting, then every other one already
queued up to ``gather`` inputs, and runs them through the model's Vectorizer as one window:
cache hits are not recomputed, texts repeated across requests are computed once, the misses
are cut into length-sorted batches and committed to the vector cache as they are computed.
Each request's rows then go back to the event loop (``call_soon_threadsafe``).

The session (the model and its vector cache) is opened, used and closed by the worker thread
alone.  A failure in the model fails the requests it was computing (500), never the server; a
window of several requests that fails is retried request by request, so one bad input fails
only its own request.

Shutdown (embctl.serve.models.ModelPool.stop): ``closing`` refuses new requests (503
``shutting_down``); :meth:`Worker.abandon` makes the thread stop at the next batch boundary
(the vectorizer's ``on_progress``, called after each batch's rows were queued for commit), so
what it computed is committed whole and what it did not is absent, and answer what it was
computing and what is queued with that 503.  The thread must have left the model before the
interpreter exits: a thread still inside torch or onnxruntime then aborts the process
("terminate called without an active exception").
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from embctl.console import plural
from embctl.errors import EmbctlError
from embctl.serve.openai_shapes import ApiError
from embctl.serve.worklimit import estimate

if TYPE_CHECKING:
    import numpy as np

    from embctl.embed.session import Session
    from embctl.serve.metrics import Metrics

log = logging.getLogger("embctl.serve")

_STOP = object()


class Abandoned(Exception):
    """Raised in the worker thread between two batches once the server stops waiting."""


def shutting_down() -> ApiError:
    """The 503 of a request the server will not answer because it is stopping."""
    return ApiError(503, "the server is shutting down; retry in a moment (against another "
                    "instance, or this one once restarted)", code="shutting_down",
                    headers={"Retry-After": "1"})
#: How long a window waits for the clients of the last ones (see Worker._gather): this
#: share of the last window's compute time, within these bounds (seconds).
GATHER_SHARE, GATHER_MIN, GATHER_MAX = 0.05, 0.002, 0.05


class Request:
    """Texts waiting for vectors, and the future (on the event loop) that gets them."""

    __slots__ = ("texts", "future", "loop")

    def __init__(self, texts: list[str], loop: asyncio.AbstractEventLoop) -> None:
        self.texts = texts
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """From the worker thread: hand the result (or error) to the waiting handler."""
        try:
            self.loop.call_soon_threadsafe(_settle, self.future, result, error)
        except RuntimeError:  # the event loop is closed: nobody waits any more
            pass


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away and its handler was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Worker:
    """A model's session, its thread and its queue.  ``start`` then ``await ready``."""

    def __init__(self, name: str, opener: Callable[[], Session], *, max_queue: int,
                 gather: int = 256, verbose: bool = True, metrics: Metrics | None = None
                 ) -> None:
        self.name = name
        self.metrics = metrics
        self._calls: list[int] = []  # texts per model call of the last window (for metrics)
        self.opener = opener
        self.gather = max(1, gather)
        self.verbose = verbose
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, max_queue))
        self.closing = False
        self.abandoned = False  # stop at the next batch boundary (read by the thread)
        self.session: Session | None = None
        self.dim = 0  # known once ready (0: the backend learns it from the first answer)
        self._recent: deque[int] = deque([1], maxlen=2)  # requests in the last windows
        self._busy = 0.0  # seconds the last window took
        self.stats = {"requests": 0, "inputs": 0, "cached": 0, "computed": 0}
        self._thread = threading.Thread(target=self._run, name=f"embctl-serve:{name}",
                                        daemon=True)
        self._ready: asyncio.Future | None = None

    # -- the event loop's side -------------------------------------------------------------

    async def start(self) -> None:
        """Start the thread, which opens the session; return once it is open (or raise why
        it could not be)."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._loop = loop
        self._thread.start()
        await asyncio.shield(self._ready)

    def submit(self, texts: list[str]) -> asyncio.Future:
        """Queue a request; its future gets ``(matrix, tokens)``.  A full queue is a 429, a
        worker shutting down a 503."""
        if self.closing or not self._thread.is_alive():
            raise shutting_down()
        request = Request(texts, asyncio.get_running_loop())
        try:
            self.queue.put_nowait(request)
        except queue.Full:
            raise ApiError(429, f"too many requests waiting for {self.name} "
                           f"({self.queue.maxsize}); retry shortly", kind="requests",
                           code="rate_limit_exceeded", headers={"Retry-After": "1"}) from None
        return request.future

    def abandon(self) -> None:
        """Stop computing (any thread): the thread answers what it holds and what is queued
        with a 503 after the batch it is in, then closes the session (its cache commits)."""
        first = not self.abandoned
        self.closing = self.abandoned = True
        try:
            self.queue.put_nowait(_STOP)  # wakes a thread waiting for work
        except queue.Full:
            pass  # the thread is busy: it sees ``abandoned`` at its next batch or window
        session = self.session
        if first and session is not None:
            try:
                session.embedder.cancel()  # a remote model: no retry of the call running
            except Exception:  # noqa: BLE001 - a plugin's cancel must not stop the shutdown
                pass

    def close(self, timeout: float = 30) -> bool:
        """Blocking: abandon, and wait up to ``timeout`` seconds for the thread to close the
        session.  -> True once the thread has ended (it was never started: True too)."""
        self.abandon()
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the worker thread -----------------------------------------------------------------

    def _opened(self, error: BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(_settle, self._ready, None, error)
        except RuntimeError:  # the event loop is closed: the server is gone
            pass

    def _between_batches(self, done: int) -> None:
        """The vectorizer's ``on_progress``: a batch's rows are queued for commit."""
        if self.abandoned:
            raise Abandoned()

    def _run(self) -> None:
        try:
            self.session = self.opener()
            embedder = self.session.embedder
            self.dim = int(self.session.vectorizer.dim or embedder.expected_dim
                           or embedder.dim or 0)
        except BaseException as exc:  # noqa: BLE001 - handed to the requests that asked
            self.closing = True
            self._opened(exc)
            return
        if self.verbose:
            model = self.session.target.model
            revision = (self.session.namespace.get("revision") or "")[:8]
            log.info("embeddings %s: opened %s:%s%s (%s dims)", self.name, model.backend,
                     model.repo_id, f"@{revision}" if revision else "", self.dim or "?")
        self._opened(None)
        self.session.vectorizer.on_progress = self._between_batches
        try:
            stop = False
            while not stop:
                first = self.queue.get()
                if first is _STOP:
                    break
                if self.abandoned:
                    first.settle(error=shutting_down())
                    break
                group, stop = self._gather(first)
                self._process(group)
                self._recent.append(len(group))
        finally:
            self._shutdown()

    def _gather(self, first: Request) -> tuple[list[Request], bool]:
        """``first`` and the requests queued behind it, up to ``gather`` inputs.  When the
        last windows served several clients and fewer have asked yet, wait for them a little
        (5% of the last window's compute time, 2 to 50 ms): clients answered together come
        back together, and one window sorts their texts by length together (less padding)
        instead of computing the first one's alone, which would keep that client out of
        step with the others for good.  A lone client never waits."""
        group, size = [first], len(first.texts)
        expected = max(self._recent)
        wait = min(GATHER_MAX, max(GATHER_MIN, GATHER_SHARE * self._busy))
        deadline = time.monotonic() + wait
        while size < self.gather:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if len(group) >= expected or left <= 0:
                    break
                try:
                    item = self.queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is _STOP:
                return group, True
            group.append(item)
            size += len(item.texts)
        return group, False

    def _shutdown(self) -> None:
        self.closing = True
        while True:  # anything still queued after the stop: the server is going away
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item.settle(error=shutting_down())
        session, self.session = self.session, None
        if session is not None:
            try:
                session.embedder.finish()
            finally:
                session.close()

    def _process(self, group: list[Request]) -> None:
        if self.abandoned:  # stopping: what is not computed yet is not started
            for request in group:
                request.settle(error=shutting_down())
            return
        texts = [t for r in group for t in r.texts]
        start = time.perf_counter()
        try:
            matrix, cached, computed = self._vectors(texts)
        except Exception as exc:  # noqa: BLE001 - a failing model must not end the worker
            if self.abandoned or isinstance(exc, Abandoned):  # stopped by the shutdown
                log.info("embeddings %s: shutting down: stopped between two batches, %s "
                         "left uncomputed", self.name, plural(len(group), "request"))
                for request in group:
                    request.settle(error=shutting_down())
                return
            if len(group) > 1:
                for request in group:  # one bad input fails only its own request
                    self._process([request])
                return
            group[0].settle(error=model_failure(self.name, exc))
            return
        self._busy = time.perf_counter() - start
        tokens = self._count(group)
        self.stats["requests"] += len(group)
        self.stats["inputs"] += len(texts)
        self.stats["cached"] += cached
        self.stats["computed"] += computed
        if self.metrics is not None:  # never raises
            self.metrics.window(self.name, len(texts), computed, self._calls)
        if self.verbose:
            log.info("embeddings %s: %s, %s (%d cached, %d computed) in %.1f ms", self.name,
                     plural(len(group), "request"), plural(len(texts), "input"), cached,
                     computed, self._busy * 1000)
        row = 0  # logged first: a client that has its answer finds the window in the log
        for request, n in zip(group, tokens, strict=True):
            request.settle((matrix[row:row + len(request.texts)], n))
            row += len(request.texts)

    def _vectors(self, texts: list[str]) -> tuple[np.ndarray, int, int]:
        import numpy as np

        assert self.session is not None
        vectorizer = self.session.vectorizer
        job = vectorizer.start(texts)  # vectors(texts), with the model calls' sizes kept
        self._calls = [len(batch) for batch in job.batches]
        blob, hits, computed, _ = vectorizer.finish(job)
        dim = len(blob) // 4 // len(texts)
        self.dim = self.dim or dim
        return np.frombuffer(blob, dtype="<f4").reshape(len(texts), dim), hits, computed

    def _count(self, group: list[Request]) -> list[int]:
        """Tokens per request, for ``usage``: the embedder's ``count_tokens`` when it has
        one, else an estimate (UTF-8 bytes / 4, rounded up)."""
        assert self.session is not None
        count = self.session.embedder.count_tokens
        if count is not None:
            try:
                return [sum(int(count(t)) for t in r.texts) for r in group]
            except Exception:  # noqa: BLE001 - usage is informative; never fail a request
                pass
        return [estimate(r.texts) for r in group]


def model_failure(name: str, exc: BaseException) -> ApiError:
    """A 500 naming the model and the failure in one line; the server log gets it too."""
    text = str(exc) if isinstance(exc, EmbctlError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())[:500]
    log.error("embeddings %s failed: %s", name, text)
    return ApiError(500, f"{name}: the model failed: {text}", code="model_error")
