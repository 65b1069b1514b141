"""Checking an embeddings response before anything of it is used or cached.

The body is parsed here, not by the openai client's models (which accept almost anything
without strict validation), so a malformed answer is rejected with a message saying what is
wrong: not JSON, no ``data`` list, the wrong number of vectors, duplicate or missing indexes,
vectors of the wrong or of differing dimension, non-numbers, NaN or infinity.  Vectors may be
JSON lists of numbers or base64 float32 (``encoding_format="base64"``, the client's default).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from embctl.plugin import EmbctlError, plural

if TYPE_CHECKING:
    import numpy as np


def _b64decoder() -> Callable[[str], bytes]:
    """pybase64's SIMD decoder when installed (about 20x the standard library's, which is a
    third of a cold run's CPU time for 1,536-dim vectors), else binascii; both strict."""
    try:
        import pybase64
    except ImportError:
        return lambda text: binascii.a2b_base64(text, strict_mode=True)
    return lambda text: pybase64.b64decode(text, validate=True)


def _json_loads() -> Callable[[bytes | str], Any]:
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


_decode_b64: Callable[[str], bytes] | None = None
_loads: Callable[[bytes | str], Any] | None = None


class MalformedResponse(EmbctlError):
    """The server answered 200 with something that is not the embeddings asked for."""


def _vector(item: Any, position: int) -> np.ndarray:
    import numpy as np

    if not isinstance(item, dict) or "embedding" not in item:
        raise MalformedResponse(f"data[{position}] has no 'embedding'")
    emb = item["embedding"]
    if isinstance(emb, str):
        try:
            raw = _decode_b64(emb)  # type: ignore[misc]
        except (binascii.Error, ValueError, TypeError):
            raise MalformedResponse(f"data[{position}].embedding is not base64") from None
        if len(raw) % 4:
            raise MalformedResponse(f"data[{position}].embedding is not float32 data")
        return np.frombuffer(raw, dtype="<f4")
    if not isinstance(emb, list):
        raise MalformedResponse(f"data[{position}].embedding is a {type(emb).__name__}, "
                                "not a list of numbers")
    arr = np.asarray(emb) if emb else np.zeros(0, dtype=np.float32)
    if arr.ndim != 1 or arr.dtype.kind not in "fiu":
        raise MalformedResponse(f"data[{position}].embedding holds non-numbers")
    return arr


def _decode_together(data: list[Any], order: list[int]) -> np.ndarray | None:
    """The common case in one decode: base64 strings of one length with no padding (float32
    vectors of a dimension divisible by 3, such as 1,536 or 3,072) concatenate into one valid
    base64 text.  None when that does not apply or fails: the caller then decodes one by one,
    which names the faulty vector."""
    import numpy as np

    try:
        texts = [item["embedding"] for item in data]
    except (TypeError, KeyError):
        return None
    if not texts or not all(type(t) is str for t in texts):
        return None
    size = len(texts[0])
    if size == 0 or size % 16 or any(len(t) != size for t in texts):
        return None  # (16: 4 characters a 3-byte group, 3 groups a 12-byte = 3-float unit)
    try:
        raw = _decode_b64("".join(texts))  # type: ignore[misc]
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        return None
    if len(raw) != len(texts) * size // 4 * 3:
        return None
    matrix = np.frombuffer(raw, dtype="<f4").reshape(len(texts), -1)
    if order == list(range(len(order))):
        return matrix  # read-only, over the decoded bytes (no copy)
    out = np.empty(matrix.shape, dtype=np.float32)
    out[order] = matrix
    return out


def parse_embeddings(body: bytes | str, count: int, dim: int | None) -> tuple[np.ndarray, int]:
    """(float32 array of shape (count, d), prompt tokens used or 0) from a response body.

    ``dim`` is the expected dimension when known (``--dimensions`` or the model's own).
    """
    import numpy as np

    global _decode_b64, _loads
    if _loads is None:
        _decode_b64, _loads = _b64decoder(), _json_loads()
    try:
        payload = _loads(body)
    except (ValueError, UnicodeDecodeError):  # orjson's JSONDecodeError is a ValueError
        raise MalformedResponse("the response is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise MalformedResponse("the response has no 'data' list")
    if len(data) != count:
        raise MalformedResponse(f"{plural(len(data), 'vector')} for {plural(count, 'input')}")
    order: list[int] = []
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else position
        if type(index) is not int or not 0 <= index < count:
            raise MalformedResponse(f"data[{position}] has a bad index {index!r}")
        order.append(index)
    if len(set(order)) != count:
        raise MalformedResponse("duplicate vector indexes")
    out = _decode_together(data, order)
    if out is None:  # the careful way, vector by vector, naming what is wrong
        vectors = [_vector(item, position) for position, item in enumerate(data)]
        dims = {len(v) for v in vectors}
        if len(dims) > 1:
            raise MalformedResponse(f"vectors of differing dimensions {sorted(dims)}")
        got = dims.pop() if dims else 0
        out = np.empty((count, got), dtype=np.float32)
        for index, vec in zip(order, vectors, strict=True):
            out[index] = vec
    got = out.shape[1]
    if got == 0:
        raise MalformedResponse("empty vectors")
    if dim and got != dim:
        raise MalformedResponse(f"vectors have {got} dimensions, expected {dim}")
    if not np.isfinite(out).all():
        raise MalformedResponse("vectors hold NaN or infinite values")
    usage = payload.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return out, tokens if type(tokens) is int else 0
