"""The ASGI app: the mirror's and the embeddings' routes, behind one token check."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from embctl.serve import embeddings, mirror

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from embctl.serve.config import ServeConfig


class BearerAuth:
    """Pure ASGI middleware: every HTTP request must carry ``Authorization: Bearer TOKEN``.

    The comparison takes constant time; the token is never logged or echoed."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        from starlette.responses import JSONResponse

        response = JSONResponse(
            {"error": {"message": "missing or wrong bearer token", "type": "invalid_request_error",
                       "param": None, "code": "invalid_api_key"}},
            status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


async def healthz(request):
    from starlette.responses import JSONResponse

    return JSONResponse({"status": "ok"})


def build_app(config: ServeConfig) -> Starlette:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    middleware = [Middleware(BearerAuth, token=config.token)] if config.token else []
    routes = [Route("/healthz", healthz, methods=["GET", "HEAD"])]
    # Embeddings first: the mirror's /{repo}/resolve/... routes are the catch-alls.
    routes += embeddings.routes(config)
    routes += mirror.routes(config)
    return Starlette(routes=routes, middleware=middleware,
                     lifespan=embeddings.lifespan(config))
