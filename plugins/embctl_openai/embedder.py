"""The Embedder the embed pipeline drives: batching hints, ordering, namespace.

The pipeline asks for ``batch_size`` inputs per call, cuts batches at ``max_batch_tokens``
estimated tokens (``count_tokens``), runs up to ``concurrency`` calls in parallel threads and
commits each returned batch to the vector cache at once.  One ``embed`` call is one HTTP request
whenever the batch fits the limits, so a failure loses at most the requests in flight and the
rerun sends only what is missing.  A batch over the limits (a pipeline that ignores the hints)
is split here into several requests, sent in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from embctl.plugin import EmbctlError, Embedder, Model, UsageError, split
from embctl_openai.client import EmbeddingsClient
from embctl_openai.settings import Settings, from_options
from embctl_openai.tokens import token_counter

if TYPE_CHECKING:
    import numpy as np


class OpenAIEmbedder(Embedder):
    def __init__(self, settings: Settings, model: Model | None = None) -> None:
        self.settings = settings
        # The core writes backend and repo_id (the API model name, which ls/rm/export match
        # on) into the namespace from the model; API models have no revision.
        self.model = model or Model(f"openai:{settings.model}", "openai", settings.model)
        self.dim = settings.dimensions or settings.native_dim or 0  # 0: unknown until used
        self.expected_dim = self.dim or None  # sizes the cache file's pages
        self.params = {
            "dimensions": settings.dimensions,
            "endpoint": settings.host,  # host[:port]/path: never credentials or query
        }
        self.batch_size = settings.batch_size
        self.max_batch_tokens = settings.max_batch_tokens
        self.concurrency = settings.concurrency
        self.max_input_tokens = settings.max_input_tokens
        self.count_tokens, self.tokens_exact = token_counter(
            settings.model, settings.is_default_endpoint
        )
        self.client = EmbeddingsClient(settings, notify=None if settings.quiet else _notify)

    def __repr__(self) -> str:  # no key, ever
        return f"OpenAIEmbedder({self.settings.model!r} at {self.settings.host})"

    @property
    def requests_sent(self) -> int:
        return self.client.requests

    @property
    def tokens_used(self) -> int:
        """Prompt tokens the server reported (what was billed), over this process's requests."""
        return self.client.tokens

    def cancel(self) -> None:
        """The pipeline is stopping (a failed batch, Ctrl-C, SIGTERM): the calls running now
        send no retry."""
        self.client.cancel()

    def split(self, inputs: Sequence[str]) -> list[tuple[int, int]]:
        """[start, end) ranges of ``inputs``, each within ``batch_size`` and the token budget
        (the pipeline's own rule: embctl/embed/batching.py)."""
        return split(inputs, self.batch_size, self.max_batch_tokens, self.count_tokens)

    def _check(self, inputs: Sequence[Any]) -> list[str]:
        texts: list[str] = []
        for text in inputs:
            if not isinstance(text, str):
                raise UsageError(f"the openai backend embeds text, got {type(text).__name__}")
            if not text:
                raise UsageError("the OpenAI embeddings API rejects empty inputs: drop empty "
                                 "lines or records first")
            if self.tokens_exact and self.max_input_tokens:
                n = self.count_tokens(text)
                if n > self.max_input_tokens:
                    raise EmbctlError(
                        f"input over the model's token limit: {n:,} tokens, "
                        f"{self.settings.model} takes at most {self.max_input_tokens:,} "
                        f"(input starts {text[:40]!r}); nothing was sent"
                    )
            texts.append(text)
        return texts

    def embed(self, inputs: Sequence[Any]) -> np.ndarray:
        import numpy as np

        texts = self._check(inputs)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self.client.embed(texts[a:b], self.dim or None) for a, b in self.split(texts)]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if not self.dim:
            self.dim = int(out.shape[1])
        return out


def _notify(message: str) -> None:
    from embctl.plugin import warn

    warn(f"openai: {message}")


def load(model: Any, options: dict[str, Any] | None) -> OpenAIEmbedder:
    """Build the embedder; offline and cheap (no key needed until the first request)."""
    if getattr(model, "revision", None):
        raise UsageError(f"{model.ref!r}: API models have no revisions")
    return OpenAIEmbedder(from_options(model.repo_id, options or {}), model)
