"""Keeping the API key out of everything embctl prints or writes.

Error text can carry the key: a proxy or a misconfigured OpenAI-compatible server may echo the
``Authorization`` header in a 401 body (``Bearer KEY``, or ``Basic`` and the base64 of
``user:KEY``), and the openai client's debug logs include request options.  Every message
built from a response or an exception goes through :func:`scrub`, and
:func:`install_log_filter` redacts records of the ``openai`` and ``httpx2``/``httpx`` loggers.
Credentials in the base URL are refused (settings.py), so Basic auth is never sent.
"""

from __future__ import annotations

import base64
import functools
import logging
import re

MASK = "***"
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")
_BASIC = re.compile(r"(?i)(basic\s+)([A-Za-z0-9+/_\-]{4,}={0,2})")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")  # OpenAI-style keys, even ones we were not given


def scrub(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """``text`` with every given secret masked, as it is and as it appears encoded (base64,
    alone or inside a longer value such as Basic auth's ``user:key``), and any bearer token,
    Basic credentials or sk- key."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            for form in _forms(secret):
                text = _mask_runs(text, form)
    text = _BEARER.sub(rf"\g<1>{MASK}", text)
    text = _BASIC.sub(_basic, text)
    return _SK.sub(MASK, text)


def _mask_runs(text: str, secret: str, run: int = 12) -> str:
    """Mask ``secret`` and every run of at least ``run`` of its characters: a key cut short or
    partly starred by an echoing server (``l-TEST-0123...``) is still most of the key."""
    if len(secret) <= run:
        return text.replace(secret, MASK)
    spans: list[tuple[int, int]] = []
    for i in range(len(secret) - run + 1):
        piece = secret[i:i + run]
        at = text.find(piece)
        while at != -1:
            spans.append((at, at + run))
            at = text.find(piece, at + 1)
    if not spans:
        return text
    spans.sort()
    out, last = [], 0
    start, end = spans[0]
    for a, b in spans[1:]:
        if a <= end:
            end = max(end, b)
            continue
        out += [text[last:start], MASK]
        last, (start, end) = end, (a, b)
    out += [text[last:start], MASK, text[end:]]
    return "".join(out)


def _basic(match: re.Match[str]) -> str:
    """Basic credentials (base64 of ``user:password``) masked; "basic usage" left alone."""
    token = match.group(2)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_"
                                   if "-" in token or "_" in token else None, validate=True)
    except ValueError:
        return match.group(0)
    return f"{match.group(1)}{MASK}" if b":" in decoded else match.group(0)


@functools.lru_cache(maxsize=16)
def _forms(secret: str) -> tuple[str, ...]:
    """The secret, its base64 (standard and URL-safe, with and without padding), and, for
    each of base64's three alignments, the characters that encode the secret's bytes alone:
    what is left of it inside the encoding of a longer value (``user:key``, ``key:``)."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret}
    whole = base64.b64encode(raw).decode()
    forms.update({whole, whole.rstrip("=")})
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        first = 0 if pad == 0 else 1  # 4-char groups that hold only the secret's bytes
        last = (pad + len(raw)) // 3
        if last - first >= 2:  # at least 6 bytes: too short a match would mask noise
            forms.add(encoded[first * 4:last * 4])
    forms |= {f.replace("+", "-").replace("/", "_") for f in forms}
    return tuple(sorted(forms, key=len, reverse=True))  # longest first


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
