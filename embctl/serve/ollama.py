"""Ollama's listing and its older embeddings route, beside ``POST /api/embed``
(`embctl.serve.embeddings`):

    GET  /api/tags         {"models": [{name, model, modified_at, size, digest, details}]}
    POST /api/embeddings   {model, prompt} -> {"embedding": [floats]}

``/api/tags`` lists what the embeddings API serves: the models ``GET /v1/models`` lists, under
the same names (what ``model`` takes).  Ollama's fields embctl has no value for are neutral:
``details.format`` is the embctl backend, ``digest`` the commit the model was pulled at (a
stable stand-in for Ollama's manifest digest), ``modified_at`` when it was last used.

``/api/embeddings`` answers as Ollama does: one vector for one ``prompt``; an empty ``prompt``
loads the model and answers ``{"embedding": []}``.  Errors are Ollama's ``{"error":
"message"}`` with the status the OpenAI route would give.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from embctl.serve.embeddings import _service, as_api_error, read_body
from embctl.serve.openai_shapes import (
    ApiError,
    EmbeddingRequest,
    Limits,
    dumps,
    ollama_error,
    parse_input,
    parse_json,
    parse_model,
)

if TYPE_CHECKING:
    import numpy as np
    from starlette.responses import Response

    from embctl.serve.config import ServeConfig


def parse_legacy(body: bytes, limits: Limits) -> EmbeddingRequest:
    """An Ollama ``POST /api/embeddings`` body: ``{model, prompt}`` (``options`` and
    ``keep_alive`` are ignored); no text when ``prompt`` is empty or absent."""
    data = parse_json(body, limits)
    if "model" not in data:
        raise ApiError(400, "'model' is required", param="model")
    model = parse_model(data["model"])
    prompt = data.get("prompt")
    if prompt is None or prompt == "":
        return EmbeddingRequest(model, [], True)
    if not isinstance(prompt, str):
        raise ApiError(400, f"'prompt' must be a string, not {type(prompt).__name__}",
                       param="prompt")
    texts, _ = parse_input(prompt, limits)
    return EmbeddingRequest(model, texts, True)


def legacy_response(matrix: np.ndarray | None) -> bytes:
    """``{"embedding": [...]}``: the one vector (float32 values), or none."""
    import numpy as np

    if matrix is None:
        return dumps({"embedding": []})
    return dumps({"embedding": np.ascontiguousarray(matrix[0], dtype="<f4")})


def _time(epoch: float | int | None) -> str:
    return datetime.fromtimestamp(epoch or 0, UTC).isoformat().replace("+00:00", "Z")


def tag(row: dict[str, Any]) -> dict[str, Any]:
    """One model of ``GET /api/tags`` from a detailed ``GET /v1/models`` row."""
    name = row["id"]
    digest = row.get("revision") or hashlib.sha256(name.encode()).hexdigest()
    return {"name": name, "model": name, "modified_at": _time(row.get("created")),
            "size": int(row.get("size_bytes") or 0), "digest": digest,
            "details": {"parent_model": "", "format": row.get("backend") or "",
                        "family": "", "families": None, "parameter_size": "",
                        "quantization_level": ""}}


def tags_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"models": [tag(row) for row in rows]}


# -- routes ------------------------------------------------------------------------------------

async def tags(request) -> Response:
    """Ollama's ``GET /api/tags``."""
    from starlette.responses import JSONResponse

    try:
        rows = await asyncio.to_thread(_service(request).pool.listing, True)
    except Exception as exc:  # noqa: BLE001 - every failure answers in Ollama's shape
        error = as_api_error(exc)
        return JSONResponse(ollama_error(error), error.status, headers=error.headers)
    return JSONResponse(tags_body(rows))


async def embeddings(request) -> Response:
    """Ollama's ``POST /api/embeddings``."""
    from starlette.responses import JSONResponse
    from starlette.responses import Response as Plain

    try:
        service = _service(request)
        req = parse_legacy(await read_body(request, service.limits), service.limits)
        if not req.texts:  # Ollama: an empty prompt loads the model
            await service.pool.get(req.model, None)
            matrix = None
        else:
            matrix, _ = await service.vectors(req)
        return Plain(legacy_response(matrix), media_type="application/json")
    except Exception as exc:  # noqa: BLE001 - every failure answers in Ollama's shape
        error = as_api_error(exc)
        return JSONResponse(ollama_error(error), error.status, headers=error.headers)


def routes(config: ServeConfig) -> list:
    """Starlette routes of Ollama's listing and older embeddings route."""
    from starlette.routing import Route

    return [Route("/api/tags", tags, methods=["GET"]),
            Route("/api/embeddings", embeddings, methods=["POST"])]
