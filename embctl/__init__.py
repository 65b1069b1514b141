"""embctl: manage a local cache of embedding models and of the embeddings computed with them.

Importing this package is cheap: heavy libraries (torch, transformers, ...) are imported only
by the functions that need them.  ``embctl.load`` is the Python API (see ``embctl.api``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load", "EmbeddingModel", "__version__"]

if TYPE_CHECKING:
    from embctl.api import EmbeddingModel, load


def __getattr__(name: str) -> Any:
    # Lazy: `import embctl` (and so `embctl --help`) never imports the API's dependencies.
    if name in ("load", "EmbeddingModel"):
        from embctl import api

        return getattr(api, name)
    raise AttributeError(f"module 'embctl' has no attribute {name!r}")
