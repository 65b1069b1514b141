"""Status codes across the server's three APIs, each answered in its own error shape.

- A path no route serves is a 404; a route asked with a method it does not take is a 405
  with ``Allow`` (the methods it takes).  Starlette alone gets both wrong here: the mirror's
  catch-alls (``/{repo}/resolve/...``) match every path, so a wrong method on a known route
  fell to them (``GET /v1/embeddings``: the mirror's 404) and an unknown path with a method
  they do not take was a 405 (``POST /nope``).  So the catch-alls take every method and
  answer 404 or 405 themselves (`any_method`), and `MethodGate` answers the 405 of every
  other route before routing starts.
- The shape is the API's the path belongs to (`shape_of`): OpenAI's under ``/v1/``
  (``{"error": {"message", "type", "param", "code"}}``), Ollama's on its routes
  (``{"error": "message"}``), the Hub's elsewhere (``{"error": "message"}`` with
  ``X-Error-Message``, and ``X-Error-Code`` when there is one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.responses import Response

#: Ollama's routes (the rest of ``/api/`` is the mirror's).
OLLAMA_PATHS = frozenset({"/api/embed", "/api/embeddings", "/api/tags"})
#: The order ``Allow`` lists methods in.
ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: Characters of an error message at most: a client's 60 KB path is not echoed back whole
#: (the Hub's shape repeats it in a header).
MAX_MESSAGE = 1000


def capped(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "..."


def shape_of(path: str) -> str:
    """``openai``, ``ollama`` or ``hub``: whose error shape a request for ``path`` gets."""
    if path == "/v1" or path.startswith("/v1/"):
        return "openai"
    if path.rstrip("/") in OLLAMA_PATHS:
        return "ollama"
    return "hub"


def allow_header(methods: set[str] | frozenset[str]) -> str:
    known = [m for m in ORDER if m in methods]
    return ", ".join(known + sorted(set(methods) - set(ORDER)))


def hub_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The Hub's error: ``{"error": message}``, the message also in ``X-Error-Message`` (one
    ASCII line: it is a header)."""
    from starlette.responses import JSONResponse

    text = " ".join(capped(message).split()).encode("ascii", "replace").decode()
    return JSONResponse({"error": text}, status_code=status,
                        headers={"X-Error-Message": text, **(headers or {})})


def error(path: str, status: int, message: str, *, code: str | None = None,
          headers: dict[str, str] | None = None) -> Response:
    """An error for a request to ``path``, in the shape of the API it belongs to."""
    from starlette.responses import JSONResponse

    shape, message = shape_of(path), capped(message)
    if shape == "hub":
        return hub_error(status, message, {**({"X-Error-Code": code} if code else {}),
                                           **(headers or {})})
    body: dict[str, Any] = {"error": message}
    if shape == "openai":
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def not_found(method: str, path: str) -> Response:
    """404: no route serves ``path`` (OpenAI words it ``Invalid URL (POST /v1/nope)``)."""
    if shape_of(path) == "openai":
        return error(path, 404, f"Invalid URL ({method} {path})")
    return error(path, 404, f"Not found: {method} {path}")


def method_not_allowed(method: str, path: str, allowed: set[str] | frozenset[str]
                       ) -> Response:
    """405 with ``Allow``: ``path`` is served, not with ``method``."""
    allow = allow_header(allowed)
    return error(path, 405, f"Invalid method for URL ({method} {path}): it takes {allow}",
                 code="method_not_allowed", headers={"Allow": allow})


def any_method(route):
    """``route`` (a starlette Route, a catch-all) with every method let through: its
    endpoint answers 404 or 405 itself, and `MethodGate` leaves it alone."""
    route.methods = None
    return route


class MethodGate:
    """Pure ASGI middleware: a request whose path a route with fixed methods serves, but not
    with this method, is answered 405 with ``Allow`` (the methods of every such route) before
    routing, where a catch-all would take it.  It reads the app's routes at each request:
    routes added later are covered too."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            allowed = self.allowed(scope)
            if allowed is not None and scope["method"] not in allowed:
                response = method_not_allowed(scope["method"], scope["path"], allowed)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def allowed(scope) -> set[str] | None:
        """The methods the routes with fixed methods take for this path; None when none of
        them serves it (the catch-alls decide)."""
        from starlette.routing import Match, Route

        app = scope.get("app")
        allowed: set[str] = set()
        for route in getattr(getattr(app, "router", None), "routes", ()):
            if not isinstance(route, Route) or not route.methods:
                continue
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return None
            if match == Match.PARTIAL:
                allowed |= route.methods
        return allowed or None
