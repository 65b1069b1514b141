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
import re
import reprlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

ENCODINGS = ("float", "base64")
#: The longest ``model`` a request may name: a Hub id has at most 96 characters; a backend
#: prefix and a revision (a 40-hex commit, or a branch) fit with room to spare.
MAX_MODEL_CHARS = 1024
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHOW = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHOW.maxstring = _SHOW.maxother = 60
_SHOW.maxlevel = 3


class ApiError(Exception):
    """An answer other than 200: HTTP status, one-line message, and OpenAI's error fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        if not message.isascii():  # a lone surrogate a client sent cannot be encoded as UTF-8
            message = message.encode("utf-8", "backslashreplace").decode("utf-8")
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


def show(value: Any) -> str:
    """``value`` as an error message quotes it: its repr, cut short (a client's megabyte of
    text, or a list nested 900 deep, is not echoed back whole)."""
    return _SHOW.repr(value)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(body: bytes, limits: Limits) -> dict[str, Any]:
    """The body's JSON object.  Strict where Python's json is lenient: NaN and Infinity are
    no JSON; a body nested deeper than Python's recursion limit is a 400, not a
    RecursionError."""
    if len(body) > limits.max_body_bytes:
        raise too_large(limits)
    try:
        data = json.loads(body, parse_constant=_constant)
    except RecursionError:
        raise ApiError(400, "request body is not valid JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        text = str(exc)
        if "integer string conversion" in text:  # Python's advice to its programmers
            text = "an integer of more than 4,300 digits"
        raise ApiError(400, f"request body is not valid JSON: {text}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def check_text(value: str, where: str, param: str) -> str:
    """``value``, unless it holds a lone UTF-16 surrogate (``"\\ud800"`` in JSON decodes to
    one): no model can tokenize it, and no response can echo it as UTF-8."""
    if not value.isascii() and (found := _SURROGATE.search(value)):
        raise ApiError(400, f"'{where}' is not valid Unicode text: a lone surrogate "
                       f"(\\u{ord(found.group()):04x}) at character {found.start()}",
                       param=param)
    return value


def parse_input(value: Any, limits: Limits) -> tuple[list[str], bool]:
    """``input``: a string or a list of strings -> (texts, single).  Token arrays: 400."""
    if isinstance(value, str):
        return [check_text(value, "input", "input")], True
    if not isinstance(value, list) or not value:
        kind = "an empty list" if value == [] else type(value).__name__
        raise ApiError(400, f"'input' must be a string or a non-empty list of strings, "
                       f"not {kind}", param="input")
    if len(value) > limits.max_inputs:
        raise ApiError(400, f"'input' has {len(value):,} items; at most {limits.max_inputs:,} "
                       "per request", param="input", code="too_many_inputs")
    if all(_is_int(x) for x in value) or all(
            isinstance(x, list) and x and all(_is_int(y) for y in x) for x in value):
        raise ApiError(400, "token arrays are not supported: send 'input' as text (a string "
                       "or a list of strings); each model here tokenizes text itself, and "
                       "ids from another tokenizer (tiktoken's) would be other words. "
                       "LangChain's OpenAIEmbeddings sends them unless given "
                       "check_embedding_ctx_length=False", param="input")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ApiError(400, f"'input[{i}]' is {type(item).__name__}, not a string",
                           param="input")
        check_text(item, f"input[{i}]", "input")
    return value, False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_dimensions(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"'dimensions' must be a positive integer, not {show(value)}",
                       param="dimensions")
    return value


def parse_model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "'model' must name a model (an embctl reference or alias)",
                       param="model")
    if len(value) > MAX_MODEL_CHARS:
        raise ApiError(400, f"'model' has {len(value):,} characters; a model's name has at "
                       f"most {MAX_MODEL_CHARS:,}", param="model")
    return check_text(value, "model", "model").strip()


def parse_openai(body: bytes, limits: Limits) -> EmbeddingRequest:
    """An OpenAI ``POST /v1/embeddings`` body.  Unknown fields (``user``) are ignored."""
    data = parse_json(body, limits)
    for name in ("model", "input"):
        if name not in data:
            raise ApiError(400, f"'{name}' is required", param=name)
    encoding = data.get("encoding_format")
    if encoding is None:
        encoding = "float"
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise ApiError(400, "'encoding_format' must be 'float' or 'base64', not "
                       f"{show(encoding)}", param="encoding_format")
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


def ollama_error(error: ApiError) -> dict[str, str]:
    """Ollama's error body: ``{"error": "message"}``."""
    return {"error": error.message}


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
