"""What the embed pipeline checks before a vector is written or cached, for every backend.

* Before the first batch is computed: the model's files that are Hugging Face cache blobs must
  match their hashes (``Embedder.model_files``, optional; see embctl/models/blobcheck.py).
* Every batch: every value must be finite.  A NaN or an infinity is never written or cached:
  the batch fails, naming the model (``Embedder.ref``, optional, else backend and repo id).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from embctl.console import plural
from embctl.errors import EmbctlError

if TYPE_CHECKING:
    import numpy as np

    from embctl.backends import Embedder


def model_name(embedder: Embedder) -> str:
    if embedder.ref:
        return embedder.ref
    ns = embedder.namespace
    return f"{ns.get('backend', '?')}:{ns.get('repo_id', '?')}"


def _cached_files(embedder: Embedder) -> list[os.PathLike[str]]:
    return [f for f in embedder.model_files or () if os.path.islink(f)]


def check_model_files(embedder: Embedder) -> None:
    """Raise EmbctlError when a cache blob of the model does not match its hash."""
    from pathlib import Path

    from embctl.models.blobcheck import damaged, snapshot_path

    files = _cached_files(embedder)
    if not files:
        return
    bad = damaged(Path(f) for f in files)
    if bad:
        file, expected, actual = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        name = model_name(embedder)
        raise EmbctlError(
            f"{name}: {snapshot_path(file)}{more} does not match its hash (expected "
            f"{expected[:12]}, got {actual[:12]}): the file is damaged or was replaced; "
            f"nothing was computed with it. Run `embctl verify {name} --repair`")


def check_finite(embedder: Embedder, vectors: np.ndarray) -> None:
    """Raise EmbctlError when a vector of the batch holds NaN or infinity."""
    import numpy as np

    if np.isfinite(vectors).all():
        return
    bad = int((~np.isfinite(vectors)).any(axis=1).sum())
    name = model_name(embedder)
    hint = (f"run `embctl verify {name}`" if _cached_files(embedder)
            else "check cached models with `embctl verify`")
    raise EmbctlError(
        f"{name} returned NaN or infinite values for {bad} of {plural(len(vectors), 'input')}; "
        "none of "
        f"them was written or cached. Its files may be damaged: {hint}")
