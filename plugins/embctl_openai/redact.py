"""Keeping the API key out of everything embctl prints or writes.

Error text can carry the key: a proxy or a misconfigured OpenAI-compatible server may echo the
``Authorization`` header in a 401 body, and the openai client's debug logs include request
options.  Every message built from a response or an exception goes through :func:`scrub`, and
:func:`install_log_filter` redacts records of the ``openai`` and ``httpx2``/``httpx`` loggers.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")  # OpenAI-style keys, even ones we were not given


def scrub(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """``text`` with every given secret (and any bearer token or sk- key) masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _BEARER.sub(rf"\g<1>{MASK}", text)
    return _SK.sub(MASK, text)


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace; cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _RedactFilter(logging.Filter):
    def __init__(self, secrets: tuple[str | None, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own handling
            return True
        clean = scrub(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_installed: set[str] = set()


def install_log_filter(secret: str | None) -> None:
    """Redact ``secret`` from the HTTP client's loggers (once per secret)."""
    if not secret or secret in _installed:
        return
    _installed.add(secret)
    flt = _RedactFilter((secret,))
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(name).addFilter(flt)
