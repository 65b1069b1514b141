"""POST /v1/embeddings and GET /v1/models.  (To be built.)"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embctl.serve.config import ServeConfig


def routes(config: ServeConfig) -> list:
    """Starlette routes of the OpenAI-compatible embeddings API."""
    return []


def lifespan(config: ServeConfig):
    """The app's lifespan: models are loaded lazily; at shutdown, close their sessions."""

    @contextlib.asynccontextmanager
    async def span(app):
        yield

    return span
