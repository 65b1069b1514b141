"""Token estimates, for batching requests under the API's limits and for ``--dry-run``.

No tokenizer download is possible offline, so the default estimate is cheap and explicit:
UTF-8 bytes / 4, rounded up (about right for English with OpenAI's BPE encodings; low for
CJK text and for random strings, which is why a request holds at most a third of the API's
300,000-token limit).  A BPE token is at least one byte, so the byte count is a hard upper
bound.  When ``tiktoken`` is installed *and* its encoding file is already cached on disk, the
exact count is used instead; embctl never makes tiktoken download anything.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from functools import lru_cache

_ENCODING_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def estimate_tokens(text: str) -> int:
    """ceil(UTF-8 bytes / 4), at least 1."""
    return max(1, -(-len(text.encode("utf-8", "surrogatepass")) // 4))


def _tiktoken_cache_dir() -> str:
    # Mirrors tiktoken.load.read_file_cached.
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


@lru_cache(maxsize=4)
def exact_counter(encoding: str = "cl100k_base") -> Callable[[str], int] | None:
    """tiktoken's counter when tiktoken is installed and the encoding is cached; else None."""
    url = _ENCODING_URLS.get(encoding)
    if url is None:
        return None
    cached = os.path.join(_tiktoken_cache_dir(), hashlib.sha1(url.encode()).hexdigest())
    if not os.path.isfile(cached):
        return None
    try:
        import tiktoken

        enc = tiktoken.get_encoding(encoding)
    except Exception:  # not installed, or the cache is unreadable: fall back to the estimate
        return None
    return lambda text: len(enc.encode(text, disallowed_special=()))


def token_counter(model: str, is_openai: bool) -> tuple[Callable[[str], int], bool]:
    """(counter, exact): tiktoken for OpenAI's models when available, else the estimate."""
    if is_openai:
        counter = exact_counter("cl100k_base")
        if counter is not None:
            return counter, True
    return estimate_tokens, False
