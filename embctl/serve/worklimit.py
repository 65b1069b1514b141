"""The work one embeddings request may ask of its model: at most ``max_request_tokens`` tokens
(``embctl serve --max-request-tokens``, ``EMBCTL_SERVE_MAX_REQUEST_TOKENS``), summed over its
inputs.  More is a 413 that says the limit and the request's figure: a model has one worker
thread, and one request of 2,048 inputs of 8,192 tokens would hold it for minutes.

The figure is the sum of the inputs' tokens as the model computes them (special tokens
included, each input truncated at the model's max_seq_length), not inputs x the longest one:
the worker sorts each window's texts by length and cuts its calls so that each pads only to
its own longest (embctl/embed/batching.py), so what a request costs grows with the sum.
OpenAI caps its embeddings requests the same way (300,000 tokens summed over the inputs).
Every input counts, cached or not: whether it is cached is known only on the worker thread,
and a client cannot know it.

The default, 2048 x 512 = 1,048,576, lets through every request of the most inputs a request
may have (``max_inputs``, 2,048) of 512 tokens each: any input of a model whose
max_seq_length is 512 or less (all-MiniLM-L6-v2: 256; BGE, E5, GTE: 512).  Only models that
take longer inputs (nomic-embed, bge-m3: 8,192) can be asked for more.

Counting, cheapest first:

1. a bound without tokenizing (`bound`): a token covers at least one UTF-8 byte, and
   `SLACK` more per input cover the special tokens and a prompt.  Under the limit (every
   ordinary request) nothing is counted;
2. else the embedder's ``token_lengths`` (st, onnx: the tokens each input is computed with),
   in a thread (`asyncio.to_thread`): never on the event loop, never on the model's worker
   thread.  The counts are kept (`KeptLengths`) for the worker's planning of the same texts,
   which takes them instead of tokenizing again (onnx keeps the encodings too: one
   tokenization in all);
3. else ``count_tokens`` (openai:: tiktoken's count, or its estimate);
4. else an estimate, UTF-8 bytes / 4 per input, rounded up (what ``usage`` reports then).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from embctl.serve.openai_shapes import ApiError

#: inputs x tokens: 2,048 inputs (the most a request may have) of 512 tokens each.
DEFAULT_MAX_REQUEST_TOKENS = 2048 * 512
#: Tokens per input the byte bound allows beyond its bytes: special tokens and a prompt.
SLACK = 64
#: Counts kept for the worker at most (the oldest go first).
KEEP = 16384


def bound(texts: Sequence[str]) -> int:
    """At least the tokens any backend counts for ``texts``, in O(inputs): an ASCII text's
    length is its UTF-8 bytes; any other's is at most 4 bytes a character."""
    return sum((len(t) if t.isascii() else 4 * len(t)) + SLACK for t in texts)


def estimate(texts: Sequence[str]) -> int:
    """UTF-8 bytes / 4 per input, rounded up (an English token is about 4 characters)."""
    return sum((len(t.encode()) + 3) // 4 for t in texts)


class KeptLengths:
    """An embedder's ``token_lengths`` that remembers the counts `count` made, so that the
    worker's planning of the same texts takes them instead of tokenizing again.  Each is
    taken once; at most `KEEP` are kept.  Other attributes are the wrapped one's (st's
    ``overflowed``)."""

    def __init__(self, lengths: Callable[[Sequence[Any]], list[int]]) -> None:
        self.lengths = lengths
        self.kept: OrderedDict[str, int] = OrderedDict()
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name == "lengths":
            raise AttributeError(name)
        return getattr(self.lengths, name)

    def count(self, texts: Sequence[str]) -> list[int]:
        """The tokens of each of ``texts`` (each distinct text tokenized once), kept."""
        unique = list(dict.fromkeys(texts))
        counted = dict(zip(unique, (int(n) for n in self.lengths(unique)), strict=True))
        with self.lock:
            for text, n in counted.items():
                self.kept[text] = n
                self.kept.move_to_end(text)
            while len(self.kept) > KEEP:
                self.kept.popitem(last=False)
        return [counted[t] for t in texts]

    def __call__(self, inputs: Sequence[Any]) -> list[int]:
        with self.lock:
            found = [self.kept.pop(x, None) if isinstance(x, str) else None for x in inputs]
        missing = [x for x, n in zip(inputs, found, strict=True) if n is None]
        if not missing:
            return found  # type: ignore[return-value]
        made = iter(self.lengths(missing))
        return [n if n is not None else next(made) for n in found]


def kept_lengths(embedder: Any) -> KeptLengths | None:
    """The embedder's ``token_lengths``, wrapped in `KeptLengths` (once); None without one."""
    lengths = getattr(embedder, "token_lengths", None)
    if lengths is None or isinstance(lengths, KeptLengths):
        return lengths
    kept = KeptLengths(lengths)
    embedder.token_lengths = kept
    return kept


def count(embedder: Any, texts: Sequence[str]) -> tuple[int, bool]:
    """(the tokens of ``texts``, whether that is a count rather than an estimate).  Call it
    off the event loop: it may tokenize megabytes."""
    lengths = kept_lengths(embedder)
    if lengths is not None:
        try:
            return sum(lengths.count(texts)), True
        except Exception:  # noqa: BLE001 - the model will say what is wrong, if anything
            pass
    counter = getattr(embedder, "count_tokens", None)
    if counter is not None:
        try:
            exact = bool(getattr(embedder, "tokens_exact", False))
            return sum(int(counter(t)) for t in texts), exact
        except Exception:  # noqa: BLE001 - as above
            pass
    return estimate(texts), False


def over(limit: int, tokens: int, inputs: int, exact: bool) -> ApiError:
    figure = f"{tokens:,} tokens" if exact else f"about {tokens:,} tokens (estimated)"
    return ApiError(413, f"this request's {inputs:,} input{'s' if inputs != 1 else ''} "
                    f"{'are' if inputs != 1 else 'is'} {figure}; at most {limit:,} tokens per "
                    "request (--max-request-tokens): send fewer or shorter inputs per request",
                    param="input", code="too_many_tokens")


class WorkLimit:
    """``await check(worker, texts)``: a 413 when ``texts`` are more work than ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def check(self, worker: Any, texts: Sequence[str]) -> None:
        if bound(texts) <= self.limit:
            return
        session = getattr(worker, "session", None)
        if session is None:  # the worker is closing: its submit answers 503
            return
        # Wrapped here, on the event loop: two requests in threads never wrap it twice.
        kept_lengths(session.embedder)
        tokens, exact = await asyncio.to_thread(count, session.embedder, texts)
        if tokens > self.limit:
            raise over(self.limit, tokens, len(texts), exact)
