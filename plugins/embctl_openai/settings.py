"""Settings of one OpenAI backend instance: where to send, what to ask, how hard to try.

Precedence for each value: the command-line option (carried in ``options``), then the
environment, then the default.  The API key is read from ``OPENAI_API_KEY`` only; it is
never taken from the command line (it would land in shell history and ``ps``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from embctl.plugin import UsageError

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Known OpenAI models: native dimension, whether ``dimensions`` may shorten it, input limit.
KNOWN_MODELS: dict[str, tuple[int, bool, int]] = {
    "text-embedding-3-small": (1536, True, 8192),
    "text-embedding-3-large": (3072, True, 8192),
    "text-embedding-ada-002": (1536, False, 8192),
}

# The API's own limits per request: 2048 inputs, 300,000 tokens summed over the inputs.
API_MAX_INPUTS = 2048
API_MAX_TOKENS = 300_000


@dataclass(frozen=True)
class Settings:
    model: str
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)  # never in repr, never in messages
    dimensions: int | None = None
    batch_size: int = 512  # inputs per request
    max_batch_tokens: int = 100_000  # estimated tokens per request (a third of the API's limit)
    concurrency: int = 4  # requests in flight
    max_attempts: int = 6  # first try + 5 retries
    backoff_s: float = 0.5  # first backoff; doubles each retry
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0  # a longer Retry-After fails the run instead of hanging
    timeout_s: float = 60.0
    encoding_format: str = "base64"  # "float" for servers that reject base64
    quiet: bool = False

    @property
    def host(self) -> str:
        """``host[:port][/path]`` of the base URL, without credentials or query: safe to show."""
        return display_url(self.base_url)

    @property
    def is_default_endpoint(self) -> bool:
        return urlsplit(self.base_url).hostname == urlsplit(DEFAULT_BASE_URL).hostname

    @property
    def max_input_tokens(self) -> int | None:
        known = KNOWN_MODELS.get(self.model)
        return known[2] if known and self.is_default_endpoint else None

    @property
    def native_dim(self) -> int | None:
        known = KNOWN_MODELS.get(self.model)
        return known[0] if known else None


def display_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = parts.path.rstrip("/")
    return f"{host}{path}"


def _opt(
    options: Mapping[str, Any], key: str, env: str, default: Any, kind: type, minimum: float = 1
) -> Any:
    value = options.get(key)
    source = f"--{key.replace('_', '-')}"
    if value is None:
        value = os.environ.get(env) or None
        source = env
    if value is None:
        return default
    try:
        parsed = kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: expected {kind.__name__}, got {value!r}") from None
    if parsed < minimum:
        raise UsageError(f"{source}: must be at least {minimum:g}")
    return parsed


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*@")


def masked_url(url: str) -> str:
    """``url`` with anything before an ``@`` in its authority (user, password) masked."""
    return _USERINFO.sub(lambda m: f"{m.group(1) or ''}***@", url)


def check_base_url(url: str, source: str = "--base-url") -> str:
    """The base URL, checked.  Credentials in it are refused, never echoed: the HTTP client
    would send them as Basic auth (the key, base64-encoded, replacing the bearer token), and
    servers echo that header in their errors."""
    if "@" in urlsplit(url).netloc or _USERINFO.match(url):
        raise UsageError(
            f"{source} {masked_url(url)}: credentials in the URL are refused (they would be "
            "sent as Basic auth and can be echoed back); put the key in OPENAI_API_KEY"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"bad base URL {display_url(url) or url!r}: expected http(s)://HOST[:PORT]/v1"
        )
    return url.rstrip("/")


def from_options(model: str, options: Mapping[str, Any] | None = None) -> Settings:
    options = options or {}
    if options.get("base_url"):
        base_url = check_base_url(options["base_url"], "--base-url")
    elif os.environ.get("OPENAI_BASE_URL"):
        base_url = check_base_url(os.environ["OPENAI_BASE_URL"], "OPENAI_BASE_URL")
    else:
        base_url = DEFAULT_BASE_URL
    dimensions = _opt(options, "dimensions", "EMBCTL_OPENAI_DIMENSIONS", None, int)
    known = KNOWN_MODELS.get(model)
    if dimensions is not None and known and urlsplit(base_url).hostname == "api.openai.com":
        native, shortenable, _ = known
        if not shortenable and dimensions != native:
            raise UsageError(f"--dimensions: {model} does not support changing its dimension")
        if dimensions > native:
            raise UsageError(f"--dimensions: {model} has at most {native} dimensions")
    batch_size = _opt(options, "batch_size", "EMBCTL_OPENAI_BATCH_SIZE", 512, int)
    encoding = os.environ.get("EMBCTL_OPENAI_ENCODING") or "base64"
    if encoding not in ("base64", "float"):
        raise UsageError(f"EMBCTL_OPENAI_ENCODING: expected base64 or float, got {encoding!r}")
    return Settings(
        model=model,
        base_url=base_url,
        api_key=os.environ.get("OPENAI_API_KEY") or None,
        dimensions=dimensions,
        batch_size=min(batch_size, API_MAX_INPUTS),
        max_batch_tokens=min(
            _opt(options, "max_batch_tokens", "EMBCTL_OPENAI_MAX_BATCH_TOKENS", 100_000, int),
            API_MAX_TOKENS,
        ),
        concurrency=min(_opt(options, "concurrency", "EMBCTL_OPENAI_CONCURRENCY", 4, int), 64),
        encoding_format=encoding,
        max_attempts=1 + _opt(options, "max_retries", "EMBCTL_OPENAI_MAX_RETRIES", 5, int, 0),
        backoff_s=_opt(options, "backoff", "EMBCTL_OPENAI_BACKOFF", 0.5, float, 0),
        timeout_s=_opt(options, "timeout", "EMBCTL_OPENAI_TIMEOUT", 60.0, float, 0.001),
        quiet=bool(options.get("quiet")),
    )
