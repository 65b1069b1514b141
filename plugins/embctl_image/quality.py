"""The seed's ``validate_embedding_quality``: a vector is usable only if every component is
finite and its norm is not zero.  Rejected vectors are reported and never cached."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def problems(vectors: np.ndarray) -> list[str | None]:
    """One entry per row: None when the vector is usable, else why it is rejected."""
    import numpy as np

    nan = np.isnan(vectors).any(axis=1)
    inf = np.isinf(vectors).any(axis=1)
    with np.errstate(all="ignore"):
        zero = ~nan & ~inf & (np.abs(vectors).max(axis=1) == 0)
    out: list[str | None] = []
    for i in range(len(vectors)):
        if nan[i]:
            out.append("the model returned NaN in its vector")
        elif inf[i]:
            out.append("the model returned an infinite value in its vector")
        elif zero[i]:
            out.append("the model returned a zero vector")
        else:
            out.append(None)
    return out
