"""The read-only Hub mirror over the local HF cache.  (To be built.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embctl.serve.config import ServeConfig


def routes(config: ServeConfig) -> list:
    """Starlette routes for /api/models/... and /{repo}/resolve/{rev}/{path}."""
    return []
