"""Secrets in query strings kept out of the access log.

A client may put its token in the URL (``?token=``, ``?api_key=``, ``?access_token=``: some
tools do when they cannot set a header); uvicorn's access log writes every request target
whole, so the token would sit in the log.  `RedactQuery`, a filter on the ``uvicorn.access``
logger (embctl/serve/server.py), replaces the value of each query parameter named like a
secret with ``REDACTED`` and leaves the rest of the line as it was.

A name is a secret's when, lowercased and percent-decoded, it contains one of `SECRET_PARTS`
(``hf_token``, ``X-Amz-Signature``, ``clientSecret``), or one of its words (split at ``_``,
``-``, ``.``, brackets and camelCase) is one of `SECRET_WORDS` (``key``, ``api-key``, ``sig``,
``auth``; not ``author`` or ``keyword``, which the Hub API uses).  Redacting a harmless
parameter costs a log line some detail; missing a secret leaks it, so the lists lean wide.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

#: A name that contains one of these is a secret's.
SECRET_PARTS = ("token", "secret", "passw", "apikey", "api_key", "credential", "signature",
                "private", "session", "cookie")
#: A name one of whose words is one of these is a secret's.
SECRET_WORDS = frozenset({"key", "pwd", "pass", "auth", "authorization", "sig", "jwt",
                          "bearer", "otp", "code", "hmac", "nonce"})
MASK = "REDACTED"
_WORDS = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret(name: str) -> bool:
    """Whether a query parameter's name (as sent, percent-encoded or not) is a secret's."""
    decoded = unquote_plus(name)
    lowered = decoded.lower()
    if any(part in lowered for part in SECRET_PARTS):
        return True
    words = _WORDS.findall(_CAMEL.sub("_", decoded).lower())
    return any(word in SECRET_WORDS for word in words)


def redact_query(query: str) -> str:
    """``query`` (without ``?``) with the values of secrets' parameters replaced; every other
    character kept.  ``;`` separates parameters too (some servers read it so)."""
    parts = re.split(r"([&;])", query)
    for i in range(0, len(parts), 2):
        name, eq, value = parts[i].partition("=")
        if eq and value and is_secret(name):
            parts[i] = f"{name}={MASK}"
    return "".join(parts)


def redact_target(target: str) -> str:
    """A request target (``/path?query``) with its query's secrets redacted."""
    path, mark, query = target.partition("?")
    return f"{path}?{redact_query(query)}" if mark else target


class RedactQuery(logging.Filter):
    """A logging filter: every string argument of a record with a ``?`` (uvicorn's access
    log passes the request target as one) has its query's secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_target(a) if isinstance(a, str) and "?" in a else a
                                for a in record.args)
        return True
