"""What the fake OpenAI server answers: deterministic vectors, and the bodies of
``POST /v1/embeddings``, well-formed or broken on purpose (the ``malformed`` faults)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import numpy as np

DEFAULT_MODELS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "test-embed": 64,
}
FIXED_DIM_MODELS = {"text-embedding-ada-002"}
MAX_INPUTS = 2048


def count_tokens(text: str) -> int:
    return max(1, -(-len(text.encode("utf-8")) // 4))


def expected_vectors(
    texts: list[str], model: str = "test-embed", dimensions: int | None = None,
    native: int | None = None,
) -> np.ndarray:
    """The float32 vectors the server returns for ``texts``: from the SHAKE-256 of the model
    name and each text, cut to ``dimensions`` and L2-normalised."""
    native = native or DEFAULT_MODELS[model]
    prefix = model.encode() + b"\0"
    raw = b"".join(
        hashlib.shake_256(prefix + t.encode("utf-8")).digest(4 * native) for t in texts
    )
    vecs = np.frombuffer(raw, dtype="<u4").reshape(len(texts), native)[:, : dimensions or native]
    vecs = vecs.astype(np.float64) / 2**31 - 1.0
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


def expected_vector(
    text: str, model: str = "test-embed", dimensions: int | None = None, native: int | None = None
) -> np.ndarray:
    """The float32 vector the server returns for ``text``."""
    return expected_vectors([text], model, dimensions, native)[0]


def _list_body(items: list[bytes], model: str, tokens: int) -> bytes:
    """An embeddings answer from already encoded ``{"object": "embedding", ...}`` items."""
    usage = b'"usage":{"prompt_tokens":%d,"total_tokens":%d}' % (tokens, tokens)
    head = b'{"object":"list","data":['
    model_json = json.dumps(model).encode()
    return head + b",".join(items) + b'],"model":' + model_json + b"," + usage + b"}"


def _item(index: int, b64: bytes) -> bytes:
    return b'{"object":"embedding","index":%d,"embedding":"%s"}' % (index, b64)


def cached_b64_body(
    cache: dict[tuple[str, int | None, str], bytes],
    model: str,
    inputs: list[str],
    dims: int | None,
    native: int,
    tokens: int,
) -> bytes:
    """The base64 answer for ``inputs``, with vectors from (and added to) ``cache``:
    (model, dimensions, text) -> base64 vector."""
    missing = [t for t in dict.fromkeys(inputs) if (model, dims, t) not in cache]
    if missing:
        vecs = expected_vectors(missing, model, dims, native).astype("<f4")
        for text, vec in zip(missing, vecs, strict=True):
            cache[(model, dims, text)] = base64.b64encode(vec.tobytes())
    items = [_item(i, cache[(model, dims, t)]) for i, t in enumerate(inputs)]
    return _list_body(items, model, tokens)


def payload(
    model: str, vectors: np.ndarray, b64: bool, tokens: int, malformed: str | None
) -> Any:
    """The answer for ``vectors``: JSON-able data, or bytes to send as they are."""
    if malformed == "json":
        return b"<html><body>502 Bad Gateway</body></html>"
    if malformed is None and b64:  # the common case, built fast (the benchmark's)
        raw = vectors.astype("<f4", copy=False).tobytes()
        step = len(raw) // len(vectors)
        items = [
            _item(i, base64.b64encode(raw[i * step : (i + 1) * step]))
            for i in range(len(vectors))
        ]
        return _list_body(items, model, tokens)

    if malformed == "all_dim":
        vectors = vectors[:, :-1]
    rows: list[Any] = [
        base64.b64encode(v.astype("<f4").tobytes()).decode() if b64 else v.tolist()
        for v in vectors
    ]
    if malformed == "dim":
        rows[-1] = (
            base64.b64encode(vectors[-1][:-1].astype("<f4").tobytes()).decode()
            if b64
            else vectors[-1][:-1].tolist()
        )
    if malformed in ("string", "nan"):
        bad = vectors[0].astype(np.float64).tolist()
        bad[0] = "0.5" if malformed == "string" else float("nan")
        rows[0] = bad
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(rows)]
    if malformed == "count":
        data.pop()
    if malformed == "index" and len(data) > 1:
        data[1]["index"] = 0
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    if malformed == "nodata":
        body.pop("data")
    return body

