"""Requests the server refuses before any route reads them, in the error shape of the API the
path belongs to (`embctl.serve.routing.error`):

- a request target that is not a path (``GET http://host/x``, ``OPTIONS *``): 400.  uvicorn
  hands it over as it came, no route matches it, and starlette answered a plain-text 404;
- two or more ``Authorization`` headers: 400, with or without ``--token``.  The field is a
  singleton (RFC 9110): which one a proxy, a framework or this server reads differs, so a
  request that carries two has no one meaning (one of them right is no excuse);
- a body in a ``Content-Encoding`` other than ``identity`` (gzip, deflate, br): 415.  No
  route decompresses a body (a few kilobytes of gzip can inflate to gigabytes), and reading
  the compressed bytes as JSON made a confusing "not valid JSON" out of it.
"""

from __future__ import annotations

from collections.abc import Iterable


def authorization_count(headers: Iterable[tuple[bytes, bytes]]) -> int:
    return sum(1 for name, _ in headers if name == b"authorization")


def body_encoding(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The ``Content-Encoding`` of a request that has a body, when it is not ``identity``;
    else None.  ASGI header names are lower case."""
    codings: list[str] = []
    has_body = False
    for name, value in headers:
        if name == b"content-encoding":
            codings += [c.strip().lower() for c in value.decode("latin-1").split(",")]
        elif name == b"transfer-encoding" or (name == b"content-length" and value.strip()
                                              not in (b"", b"0")):
            has_body = True
    other = [c for c in codings if c not in ("", "identity")]
    return ", ".join(other) if has_body and other else None


class HeaderChecks:
    """Pure ASGI middleware: the checks above, for every HTTP request."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            response = None
            if not scope["path"].startswith("/"):
                response = _error(scope, 400, f"the request target must be a path (/...), "
                                  f"not {scope['path'][:100]!r}", "invalid_target")
            elif authorization_count(headers) > 1:
                response = _error(scope, 400, "the request has more than one Authorization "
                                  "header: send one", "invalid_authorization")
            elif (coding := body_encoding(headers)) is not None:
                response = _error(scope, 415, f"Content-Encoding {coding[:60]} is not supported: "
                                  "send the body uncompressed", "unsupported_content_encoding")
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(scope, status: int, message: str, code: str):
    from embctl.serve.routing import error

    return error(scope["path"], status, message, code=code)
