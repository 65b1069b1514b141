"""Device choice for backends that run a torch model: a core service, so that every backend
(built-in or not) picks the same device for the same ``device`` option."""

from __future__ import annotations


def pick_device(requested: str | None) -> str:
    """``requested`` when given, else ``cuda`` when torch sees a GPU, else ``cpu``.  torch is
    imported only to choose; without torch the answer is ``cpu``."""
    if requested:
        return requested
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
