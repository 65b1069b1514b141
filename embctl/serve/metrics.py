"""``GET /metrics``: the server's Prometheus metrics, in the text exposition format.

    embctl_requests_total{route,status}          requests answered
    embctl_request_seconds{route}                 histogram: time to answer a request
    embctl_embedded_texts_total{model,cache}      texts embedded: cache="hit" or "computed"
    embctl_batch_size                             histogram: texts per model call
    embctl_queue_depth                            requests waiting for a model, all models
    embctl_model_loaded{model}                    1 while a model is loaded

Each app has a ``CollectorRegistry`` of its own (two apps in one process never share a series),
built with the app; prometheus_client is imported then, never by ``embctl --help``.  ``route``
is the path template of the route that answered (``/v1/embeddings``), never the raw path:
the mirror's catch-all routes are named by the shape of the path (``/{repo}/resolve/
{revision}/{path}``), anything else is ``other``, so a scanner cannot add series.

What costs something is counted where it happens, once per request or per model call; the
gauges are read from the model pool when scraped.  Recording never fails a request.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embctl.serve.batcher import Worker

log = logging.getLogger("embctl.serve")

#: The label of a request no route (or only a catch-all, for no path it serves) matches.
OTHER = "other"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: Paths whose route label is remembered (a label costs ~10-25 µs to find, a lookup ~0.1).
LABEL_CACHE = 1024
#: A template that is a prefix and one ``{name:path}`` parameter: a catch-all.
CATCH_ALL = re.compile(r"^(/[^{}]*)?\{\w+:path\}$")
#: The paths the mirror's catch-alls serve, by shape (checked in order).
MIRROR_SHAPES = [(re.compile(pattern), label) for pattern, label in (
    (r"^/api/models/?$", "/api/models"),
    (r"^/api/models/.+/tree/", "/api/models/{repo}/tree/{revision}"),
    (r"^/api/models/.+/paths-info/", "/api/models/{repo}/paths-info/{revision}"),
    (r"^/api/models/.+/refs/?$", "/api/models/{repo}/refs"),
    (r"^/api/models/.+/revision/", "/api/models/{repo}/revision/{revision}"),
    (r"^/api/models/[^/]+(/[^/]+)?/?$", "/api/models/{repo}"),
    (r"^/[^/]+(/[^/]+)?/resolve/[^/]+/.", "/{repo}/resolve/{revision}/{path}"),
)]


def route_label(routes: Sequence[Any], scope: dict) -> str:
    """The ``route`` label of a request: the template of the first route whose path matches
    (whatever the method: a 405 is labelled by the route it names); a path only a catch-all
    matches is labelled by its shape (:func:`shape_label`); ``other`` when nothing matches."""
    from starlette.routing import Match

    caught = False
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.NONE:
            continue
        template = getattr(route, "path", None)
        if not template or CATCH_ALL.match(template):
            caught = True
            continue
        return template
    return shape_label(scope.get("path", "")) if caught else OTHER


def shape_label(path: str) -> str:
    """The label of a path a catch-all route matched: the mirror's route it names, or
    ``other``."""
    for pattern, label in MIRROR_SHAPES:
        if pattern.match(path):
            return label
    return OTHER


class Metrics:
    """One app's metrics and their registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("embctl_requests", "HTTP requests answered, by route template "
                                "and status code", ["route", "status"], registry=r)
        self.seconds = Histogram("embctl_request_seconds", "Seconds from a request's arrival "
                                 "to the end of its answer, by route template", ["route"],
                                 buckets=REQUEST_BUCKETS, registry=r)
        self.texts = Counter("embctl_embedded_texts", "Texts answered with a vector, by model; "
                             "cache=computed: computed by the model, cache=hit: from the vector "
                             "cache or a repeat within the same window", ["model", "cache"],
                             registry=r)
        self.batch = Histogram("embctl_batch_size", "Texts per model call the batcher makes",
                               buckets=BATCH_BUCKETS, registry=r)
        self.queue = Gauge("embctl_queue_depth", "Requests waiting for a model (all models)",
                           registry=r)
        self.loaded = Gauge("embctl_model_loaded", "1 while the model is loaded, 0 after it "
                            "was closed", ["model"], registry=r)
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    # -- recording (never raises) -----------------------------------------------------------

    def request(self, route: str, status: int, seconds: float) -> None:
        try:
            children = self._children.get((route, status))
            if children is None:  # labels() costs a lock and a lookup: once per series
                children = self._children[route, status] = (
                    self.requests.labels(route, str(status)), self.seconds.labels(route))
            children[0].inc()
            children[1].observe(seconds)
        except Exception:  # noqa: BLE001 - metrics never fail a request
            log.debug("metrics: cannot record a request", exc_info=True)

    def window(self, model: str, texts: int, computed: int, batches: Iterable[int]) -> None:
        """From a worker thread: one window answered ``texts`` texts, ``computed`` of them by
        the model in calls of ``batches`` texts (the rest were hits)."""
        try:
            if computed:
                self.texts.labels(model, "computed").inc(computed)
            if texts > computed:
                self.texts.labels(model, "hit").inc(texts - computed)
            for size in batches:
                self.batch.observe(size)
        except Exception:  # noqa: BLE001 - metrics never fail a request
            log.debug("metrics: cannot record a window", exc_info=True)

    # -- scraping ---------------------------------------------------------------------------

    def exposition(self, workers: Iterable[Worker], accept: str = "") -> tuple[bytes, str]:
        """(body, content type) with the gauges read from ``workers`` now: the text format,
        or OpenMetrics when the ``Accept`` header asks for it (as Prometheus does)."""
        from prometheus_client.exposition import choose_encoder

        depth, loaded = 0, {}
        for worker in workers:
            depth += worker.queue.qsize()
            # Two workers may share a name (openai: with two `dimensions`): loaded if either.
            loaded[worker.name] = max(loaded.get(worker.name, 0), worker.session is not None)
        self.queue.set(depth)
        for name, value in loaded.items():
            self.loaded.labels(name).set(int(value))
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def build_metrics() -> Metrics | None:
    """The app's metrics; None (with a warning) when prometheus-client is not installed."""
    try:
        return Metrics()
    except ImportError:
        log.warning("GET /metrics is off: prometheus-client is not installed "
                    "(pip install 'embctl[serve]')")
        return None


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by route and status."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._labels: dict[str, str] = {}  # path -> route label (the label ignores the method)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            status = status or 500  # what the server's error middleware answers
            raise
        finally:
            if status:  # 0: cancelled before answering (SIGTERM's grace ran out)
                self._record(scope, status, time.perf_counter() - start)

    def _record(self, scope: dict, status: int, seconds: float) -> None:
        label = self._labels.get(scope["path"])
        if label is None:
            try:
                app = scope.get("app")
                label = route_label(app.router.routes if app is not None else (), scope)
            except Exception:  # noqa: BLE001 - metrics never fail a request
                label = OTHER
            if len(self._labels) >= LABEL_CACHE:  # a scanner's paths: start over
                self._labels.clear()
            self._labels[scope["path"]] = label
        self.metrics.request(label, status, seconds)


async def metrics_endpoint(request):
    """``GET /metrics``."""
    from starlette.responses import JSONResponse, Response

    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    if metrics is None:
        from embctl.serve.openai_shapes import ApiError

        error = ApiError(503, "metrics are off: prometheus-client is not installed on the "
                         "server (pip install 'embctl[serve]')", code="unavailable")
        return JSONResponse(error.openai_body(), error.status)
    service = getattr(request.app.state, "embeddings", None)
    workers = list(service.pool.workers.values()) if service is not None else []
    body, content_type = metrics.exposition(workers, request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": content_type})
