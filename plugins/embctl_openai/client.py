"""One embeddings request through the official openai client, retried, parsed and checked."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from embctl.plugin import EmbctlError
from embctl_openai.faults import classify
from embctl_openai.redact import install_log_filter
from embctl_openai.retry import RetryPolicy, Throttle, call_with_retries
from embctl_openai.settings import Settings
from embctl_openai.validate import MalformedResponse, parse_embeddings

if TYPE_CHECKING:
    import numpy as np

# Sent when no key is set and the base URL is not OpenAI's: local servers (vLLM, Ollama, TEI)
# usually need none, but the openai client insists on one.
NO_KEY = "embctl-no-key"


def _import_openai() -> Any:
    """``import openai`` with the cyclic garbage collector paused: the import builds a few
    hundred thousand long-lived objects (its pydantic types) and nothing to collect, and the
    collections it would trigger cost about a tenth of its 0.6 s."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        import openai
    finally:
        if enabled:
            gc.enable()
    return openai


def make_client(settings: Settings) -> Any:
    """An ``openai.OpenAI`` with its own retries off (see retry.py) and our timeout."""
    if not settings.api_key and settings.is_default_endpoint:
        raise EmbctlError(
            "OPENAI_API_KEY is not set (for an OpenAI-compatible server, set OPENAI_BASE_URL "
            "or --base-url)"
        )
    install_log_filter(settings.api_key)
    openai = _import_openai()
    return openai.OpenAI(
        api_key=settings.api_key or NO_KEY,
        base_url=settings.base_url,
        max_retries=0,
        timeout=openai.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 10.0)),
        organization=None,
        project=None,
    )


@functools.cache
def _response_class() -> type:
    """The Response class of the HTTP library the openai client is built on: httpx for
    openai 1.x and 2.x, httpx2 for 3.x (found from the client class, not guessed from
    what happens to be installed)."""
    import sys

    import openai

    for cls in openai.DefaultHttpxClient.__mro__:
        root = cls.__module__.partition(".")[0]
        if root in ("httpx", "httpx2") and root in sys.modules:
            return sys.modules[root].Response
    raise EmbctlError("unsupported openai client: its HTTP library is neither httpx nor httpx2")


class EmbeddingsClient:
    """Thread-safe: the openai client is shared by the pipeline's worker threads."""

    def __init__(self, settings: Settings, notify: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.notify = notify
        self.policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_s=settings.backoff_s,
            max_backoff_s=settings.max_backoff_s,
            max_retry_after_s=settings.max_retry_after_s,
        )
        self.throttle = Throttle()
        self._stop = threading.Event()  # set (and replaced) by cancel()
        self._client: Any = None
        self._lock = threading.Lock()
        self.requests = 0
        self.tokens = 0

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = make_client(self.settings)
            return self._client

    def _post(self, inputs: list[str]) -> bytes:
        """POST /embeddings through the client's documented raw-request method
        (``client.post(path, body=..., cast_to=<http library>.Response)``): the same URL,
        headers, auth, timeouts and error types as ``client.embeddings.create``, without
        its per-input type transform of the body (half the client's CPU time per request
        of 512 inputs) or response models (the body is checked by validate.py)."""
        s = self.settings
        body: dict[str, Any] = {"input": inputs, "model": s.model,
                                "encoding_format": s.encoding_format}
        if s.dimensions is not None:
            body["dimensions"] = s.dimensions
        client = self.client
        response = client.post("/embeddings", body=body, cast_to=_response_class())
        with self._lock:
            self.requests += 1
        return response.content

    def cancel(self) -> None:
        """Retry nothing that is running now (requests in flight finish); calls made after
        this one are not affected."""
        with self._lock:
            self._stop.set()
            self._stop = threading.Event()

    @staticmethod
    def _sleep(seconds: float, stop: threading.Event) -> None:
        if stop.wait(seconds):
            raise EmbctlError("the run was stopped; not retried")

    def embed(self, inputs: Sequence[str], dim: int | None) -> np.ndarray:
        """Vectors for ``inputs`` in one request (retried), shape (len(inputs), d)."""
        stop = self._stop
        batch = list(inputs)
        body = call_with_retries(
            lambda: self._post(batch),
            lambda exc: classify(exc, self.settings, batch),
            self.policy,
            throttle=self.throttle,
            sleep=lambda seconds: self._sleep(seconds, stop),
            notify=self.notify,
        )
        try:
            vectors, tokens = parse_embeddings(body, len(batch), dim)
        except MalformedResponse as exc:
            raise MalformedResponse(
                f"malformed response from {self.settings.host}: {exc} (nothing of it was cached)"
            ) from None
        with self._lock:
            self.tokens += tokens
        return vectors
