"""Turning the openai client's exceptions into retry verdicts and one-line messages.

Retryable: 408, 409, 429, 5xx, timeouts and dropped or refused connections.  Not retryable,
each with a message naming the cause: 401 (bad key), 403 (no access), an unknown model (404, or
a 400 saying so), an input over the model's token limit (400/413/422 saying so), any other 4xx.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from embctl_openai.redact import one_line, scrub
from embctl_openai.retry import Verdict, parse_retry_after
from embctl_openai.settings import Settings
from embctl_openai.tokens import estimate_tokens

_TOKEN_LIMIT = re.compile(
    r"context length|too many tokens|token limit|maximum.*tokens|tokens?.*(exceed|too long)"
    r"|input.*too long|must have less than \d+ tokens",
    re.IGNORECASE,
)
_NO_MODEL = re.compile(
    r"model.*(not found|does not exist|not exist|unknown|not available|no such)"
    r"|(unknown|invalid) model|model_not_found",
    re.IGNORECASE,
)


def server_message(body: Any, fallback: str = "") -> str:
    """The human message inside an error body: OpenAI's ``{"error": {"message": ...}}``, a
    ``{"detail"|"message"|"error": "..."}`` of other servers, or the raw text."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            for key in ("message", "detail", "error"):
                if isinstance(err.get(key), str):
                    return err[key]
        if isinstance(err, str):
            return err
        for key in ("message", "detail"):
            if isinstance(body.get(key), str):
                return body[key]
    if isinstance(body, str) and body.strip():
        return body
    return fallback


def _longest(inputs: Sequence[str]) -> str:
    if not inputs:
        return ""
    text = max(inputs, key=len)
    preview = one_line(text, 40)
    return f"; the longest input in the request has about {estimate_tokens(text):,} tokens " \
           f"and starts {preview!r}"


def classify(exc: BaseException, settings: Settings, inputs: Sequence[str] = ()) -> Verdict | None:
    """A :class:`Verdict` for an exception raised by the openai client, None for others."""
    import openai

    host = settings.host
    secrets = (settings.api_key, urlsplit(settings.base_url).password)
    if isinstance(exc, openai.APITimeoutError):
        return Verdict(f"request to {host} timed out after {settings.timeout_s:g} s", True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f" ({one_line(scrub(str(cause), secrets), 120)})" if cause and str(cause) else ""
        return Verdict(f"connection to {host} failed{detail}", True)
    if not isinstance(exc, openai.APIStatusError):
        return None
    status = exc.status_code
    message = one_line(scrub(server_message(exc.body, exc.response.reason_phrase), secrets))
    said = f" ({status}: {message})" if message else f" ({status})"
    headers = exc.response.headers
    if status == 429:
        return Verdict(f"rate limited by {host}{said}", True, parse_retry_after(headers), True)
    if status in (408, 409) or status >= 500:
        return Verdict(f"{host} failed{said}", True, parse_retry_after(headers))
    if status == 401:
        return Verdict(f"authentication failed at {host}{said}: check OPENAI_API_KEY", False)
    if status == 403:
        return Verdict(f"access denied at {host}{said}: the key has no access to "
                       f"{settings.model!r} or to the API", False)
    if status in (400, 404, 413, 422) and _TOKEN_LIMIT.search(message):
        return Verdict(f"input over the model's token limit{said}{_longest(inputs)}", False)
    if status == 404 or _NO_MODEL.search(message) and status in (400, 422):
        if status == 404 and not re.search("model", message, re.IGNORECASE):
            return Verdict(f"{host} has no embeddings endpoint{said}: is the base URL right? "
                           "(OpenAI-compatible servers usually want .../v1)", False)
        return Verdict(f"unknown model {settings.model!r} at {host}{said}", False)
    return Verdict(f"request rejected by {host}{said}", False)
