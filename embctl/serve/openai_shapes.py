"""The wire formats of the embeddings API: OpenAI's request, response and error, and Ollama's
``/api/embed``.  Pure functions over bytes, dicts and numpy arrays; no starlette, no model.

A request is checked completely before it reaches a model, and every mistake is one
:class:`ApiError` with one clear message: the handler turns it into the error body OpenAI's
clients parse (``{"error": {"message", "type", "param", "code"}}``), or Ollama's
(``{"error": "message"}``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

ENCODINGS = ("float", "base64")


class ApiError(Exception):
    """An answer other than 200: HTTP status, one-line message, and OpenAI's error fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind or ("server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def openai_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_inputs: int
    max_body_bytes: int


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    texts: list[str]
    single: bool  # ``input`` was one string (Ollama answers the same list shape either way)
    encoding: str = "float"
    dimensions: int | None = None


def too_large(limits: Limits) -> ApiError:
    return ApiError(413, f"request body over {limits.max_body_bytes:,} bytes; send fewer or "
                    "shorter inputs per request", code="request_too_large")


def parse_json(body: bytes, limits: Limits) -> dict[str, Any]:
    if len(body) > limits.max_body_bytes:
        raise too_large(limits)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def parse_input(value: Any, limits: Limits) -> tuple[list[str], bool]:
    """``input``: a string or a list of strings -> (texts, single).  Token arrays: 400."""
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, list) or not value:
        kind = "an empty list" if value == [] else type(value).__name__
        raise ApiError(400, f"'input' must be a string or a non-empty list of strings, "
                       f"not {kind}", param="input")
    if len(value) > limits.max_inputs:
        raise ApiError(400, f"'input' has {len(value):,} items; at most {limits.max_inputs:,} "
                       "per request", param="input", code="too_many_inputs")
    if all(_is_int(x) for x in value) or all(
            isinstance(x, list) and x and all(_is_int(y) for y in x) for x in value):
        raise ApiError(400, "token arrays are not supported: send 'input' as text "
                       "(a string or a list of strings)", param="input")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ApiError(400, f"'input[{i}]' is {type(item).__name__}, not a string",
                           param="input")
    return value, False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_dimensions(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"'dimensions' must be a positive integer, not {value!r}",
                       param="dimensions")
    return value


def parse_model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "'model' must name a model (an embctl reference or alias)",
                       param="model")
    return value.strip()


def parse_openai(body: bytes, limits: Limits) -> EmbeddingRequest:
    """An OpenAI ``POST /v1/embeddings`` body.  Unknown fields (``user``) are ignored."""
    data = parse_json(body, limits)
    for name in ("model", "input"):
        if name not in data:
            raise ApiError(400, f"'{name}' is required", param=name)
    encoding = data.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise ApiError(400, f"'encoding_format' must be 'float' or 'base64', not {encoding!r}",
                       param="encoding_format")
    texts, single = parse_input(data["input"], limits)
    return EmbeddingRequest(parse_model(data["model"]), texts, single, encoding,
                            parse_dimensions(data.get("dimensions")))


def parse_ollama(body: bytes, limits: Limits) -> EmbeddingRequest:
    """An Ollama ``POST /api/embed`` body: ``{model, input, dimensions?}``."""
    data = parse_json(body, limits)
    for name in ("model", "input"):
        if name not in data:
            raise ApiError(400, f"'{name}' is required", param=name)
    texts, single = parse_input(data["input"], limits)
    return EmbeddingRequest(parse_model(data["model"]), texts, single, "float",
                            parse_dimensions(data.get("dimensions")))


def truncate(matrix: np.ndarray, dimensions: int) -> np.ndarray:
    """Matryoshka: the first ``dimensions`` of each vector, L2-normalized again (what
    sentence-transformers' ``truncate_dim`` with ``normalize_embeddings`` computes)."""
    import numpy as np

    head = np.array(matrix[:, :dimensions], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    np.divide(head, norms, out=head, where=norms > 0)
    return head


def openai_response(request: EmbeddingRequest, matrix: np.ndarray, tokens: int) -> bytes:
    """OpenAI's response body.  base64 is the vector's little-endian float32 bytes, which is
    what the openai client decodes (``np.frombuffer(..., dtype="float32")``)."""
    import numpy as np

    matrix = np.ascontiguousarray(matrix, dtype="<f4")
    if request.encoding == "base64":
        rows: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in matrix]
    else:
        rows = list(matrix)
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
    return dumps({"object": "list", "data": data, "model": request.model,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def ollama_response(request: EmbeddingRequest, matrix: np.ndarray, tokens: int) -> bytes:
    import numpy as np

    return dumps({"model": request.model,
                  "embeddings": list(np.ascontiguousarray(matrix, dtype="<f4")),
                  "prompt_eval_count": tokens})


def dumps(payload: dict[str, Any]) -> bytes:
    """JSON with float32 vectors written in their shortest exact form (orjson, when
    installed: about 10x faster than json on vectors), else json with Python floats."""
    try:
        import orjson
    except ImportError:
        return json.dumps(payload, separators=(",", ":"), default=_tolist).encode()
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def _tolist(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
