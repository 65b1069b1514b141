"""POST /v1/embeddings, GET /v1/models and Ollama's POST /api/embed.

    openai_shapes.py  requests, responses and errors on the wire
    models.py         ModelPool: a request's model resolved, loaded once, listed
    batcher.py        Worker: one thread per model, its bounded queue, batching across clients

The limits come from ServeConfig; EMBCTL_SERVE_MAX_QUEUE, EMBCTL_SERVE_MAX_INPUTS and
EMBCTL_SERVE_MAX_BODY_BYTES override them (for operators and tests: a queue of 1 makes a 429
easy to provoke).  EMBCTL_SERVE_MAX_REQUEST_TOKENS sets the work a request may ask for
(worklimit.py) unless ``--max-request-tokens`` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

from embctl.errors import UsageError
from embctl.serve.openai_shapes import (
    ApiError,
    EmbeddingRequest,
    Limits,
    ollama_error,
    ollama_response,
    openai_response,
    parse_ollama,
    parse_openai,
    too_large,
    truncate,
)
from embctl.serve.worklimit import DEFAULT_MAX_REQUEST_TOKENS, WorkLimit

if TYPE_CHECKING:
    import numpy as np

    from embctl.serve.config import ServeConfig
    from embctl.serve.models import ModelPool

ENV_LIMITS = {"max_queue": "EMBCTL_SERVE_MAX_QUEUE", "max_inputs": "EMBCTL_SERVE_MAX_INPUTS",
              "max_body_bytes": "EMBCTL_SERVE_MAX_BODY_BYTES",
              "max_request_tokens": "EMBCTL_SERVE_MAX_REQUEST_TOKENS"}
#: Limits that are also options: None in the config (the option not given) is the
#: environment's value or this default; a value given wins over the environment.
OPTION_DEFAULTS = {"max_request_tokens": DEFAULT_MAX_REQUEST_TOKENS}


def limits_of(config: ServeConfig) -> dict[str, int]:
    """max_queue, max_inputs, max_body_bytes: the config's, or their environment variable's;
    max_request_tokens: the config's when given, else its variable's, else the default."""
    out = {}
    for name, var in ENV_LIMITS.items():
        text = os.environ.get(var, "").strip()
        given = getattr(config, name)
        if name in OPTION_DEFAULTS and given is not None:
            text = ""  # the option wins
        if not text:
            out[name] = int(OPTION_DEFAULTS[name] if given is None else given)
            continue
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise UsageError(f"{var}={text!r}: expected a positive integer")
        out[name] = value
    return out


class Service:
    """What the routes share: the limits and the model pool (``app.state.embeddings``)."""

    def __init__(self, config: ServeConfig) -> None:
        from embctl.serve.models import ModelPool

        values = limits_of(config)
        self.limits = Limits(values["max_inputs"], values["max_body_bytes"])
        self.pool: ModelPool = ModelPool(config, values["max_queue"])
        self.work = WorkLimit(values["max_request_tokens"])

    async def vectors(self, request: EmbeddingRequest) -> tuple[np.ndarray, int]:
        plan = await self.pool.get(request.model, request.dimensions)
        await self.work.check(plan.worker, request.texts)  # 413: more work than a request may be
        matrix, tokens = await self.pool.wait(plan.worker.submit(request.texts))
        if plan.truncate is not None:
            matrix = truncate(matrix, plan.truncate)
        return matrix, tokens


async def read_body(request, limits: Limits) -> bytes:
    """The body, refused (413) as soon as it is known to pass the limit: by its
    Content-Length, or while it streams in; a body cut short is a 400."""
    from embctl.serve.bodies import read_capped

    return await read_capped(request, limits.max_body_bytes, lambda: too_large(limits),
                             lambda: ApiError(400, "the request ended before its body did"))


def as_api_error(exc: Exception) -> ApiError:
    """The error to answer: an ApiError as it is; anything else (a plugin's bug) a 500 with
    one line, logged."""
    if isinstance(exc, ApiError):
        return exc
    from embctl.serve.batcher import model_failure

    return model_failure("embeddings", exc)


def _service(request) -> Service:
    service = getattr(request.app.state, "embeddings", None)
    if service is None:
        raise ApiError(503, "the embeddings service is not running", code="unavailable")
    return service


async def _answer(request, parse, respond, error_body):
    """Parse the body (``parse``), embed, and answer with ``respond``; every failure in the
    API's own error shape (``error_body``)."""
    from starlette.responses import JSONResponse, Response

    try:
        service = _service(request)
        req = parse(await read_body(request, service.limits), service.limits)
        matrix, tokens = await service.vectors(req)
        return Response(respond(req, matrix, tokens), media_type="application/json")
    except Exception as exc:  # noqa: BLE001 - every failure answers in the API's shape
        error = as_api_error(exc)
        return JSONResponse(error_body(error), error.status, headers=error.headers)
    except asyncio.CancelledError:
        # Only uvicorn cancels a handler: its grace ran out (the pool answers before that).
        from embctl.serve.batcher import shutting_down

        error = shutting_down()
        return JSONResponse(error_body(error), error.status, headers=error.headers)


async def embeddings(request):
    """OpenAI's ``POST /v1/embeddings``."""
    return await _answer(request, parse_openai, openai_response, ApiError.openai_body)


async def ollama_embed(request):
    """Ollama's ``POST /api/embed``: ``{model, input}`` -> ``{model, embeddings}``."""
    return await _answer(request, parse_ollama, ollama_response, ollama_error)


async def list_models(request):
    """OpenAI's ``GET /v1/models``."""
    from starlette.responses import JSONResponse

    try:
        rows = await asyncio.to_thread(_service(request).pool.listing)
    except ApiError as exc:
        return JSONResponse(exc.openai_body(), exc.status, headers=exc.headers)
    return JSONResponse({"object": "list", "data": rows})


def routes(config: ServeConfig) -> list:
    """Starlette routes of the OpenAI-compatible embeddings API."""
    from starlette.routing import Route

    limits_of(config)  # a bad EMBCTL_SERVE_* value stops the start with one line (exit 2)
    return [Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/api/embed", ollama_embed, methods=["POST"])]


def lifespan(config: ServeConfig):
    """The app's lifespan: models are loaded lazily; at shutdown, close their sessions."""

    @contextlib.asynccontextmanager
    async def span(app):
        service = Service(config)
        service.pool.metrics = getattr(app.state, "metrics", None)  # GET /metrics' counters
        app.state.embeddings = service
        try:
            yield
        finally:
            # After uvicorn finished the requests in flight: each worker stops and closes its
            # session, which commits the vector cache.
            app.state.unfinished = await asyncio.to_thread(service.pool.close)

    return span


def stop(app, hurry: bool = False) -> None:
    """SIGTERM (``hurry``: a second signal), on the event loop: the pool stops taking work
    and answers what waits (embctl.serve.models.ModelPool.stop)."""
    service = getattr(app.state, "embeddings", None)
    if service is not None:
        service.pool.stop(hurry)


def unfinished(app) -> list[str]:
    """After the lifespan: the models whose worker was still inside a batch when it ended."""
    return list(getattr(app.state, "unfinished", None) or [])
