"""The ASGI app: the mirror's and the embeddings' routes, behind one token check."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from embctl.serve import embeddings, mirror, ollama, routing

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from embctl.serve.config import ServeConfig


class BearerAuth:
    """Pure ASGI middleware: every HTTP request must carry ``Authorization: Bearer TOKEN``.

    The comparison takes constant time; the token is never logged or echoed."""

    def __init__(self, app, token: str, public: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.public = public  # paths open without the token (--metrics-public: /metrics)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public:
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

    from embctl.serve.metrics import MetricsMiddleware, build_metrics, metrics_endpoint

    public = frozenset({"/metrics"}) if config.metrics_public else frozenset()
    middleware = [Middleware(BearerAuth, token=config.token, public=public)] \
        if config.token else []
    from embctl.serve.headers import HeaderChecks

    # Before the token check: two Authorization headers are a 400, even when one is right.
    middleware.insert(0, Middleware(HeaderChecks))
    metrics = build_metrics()  # outermost: 401s are counted too
    if metrics is not None:
        middleware.insert(0, Middleware(MetricsMiddleware, metrics=metrics))
    routes = [Route("/healthz", healthz, methods=["GET", "HEAD"]),
              Route("/metrics", metrics_endpoint, methods=["GET"])]
    # Embeddings first: the mirror's /{repo}/resolve/... routes are the catch-alls.
    routes += embeddings.routes(config)
    routes += ollama.routes(config)
    routes += mirror.routes(config)
    # After the token check: a wrong method is a 405 before the catch-alls can take it.
    middleware.append(Middleware(routing.MethodGate))
    app = Starlette(routes=routes, middleware=middleware,
                    lifespan=embeddings.lifespan(config))
    app.state.metrics = metrics  # read by GET /metrics and the model pool (lifespan)
    return app
