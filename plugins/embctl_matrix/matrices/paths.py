"""Where matrices are cached (standard library only: ``ls`` and ``du`` import it)."""

from __future__ import annotations

from pathlib import Path

from embctl.plugin import embctl_home


def matrices_dir() -> Path:
    """``EMBCTL_HOME/matrices``."""
    return embctl_home() / "matrices"
