"""Cutting inputs into model calls: ``batch_size`` inputs a call and, for a backend that
declares a token budget (``Embedder.max_batch_tokens`` with ``count_tokens(payload)``: API
request limits), a cut before a call's estimated tokens pass it.  One rule, used by the
Vectorizer's planning and by any backend that must split a batch itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def split(items: Sequence[T], batch_size: int, budget: int | None = None,
          count: Callable[[T], int] | None = None) -> list[tuple[int, int]]:
    """[start, end) ranges of ``items``: at most ``batch_size`` each and, with a ``budget``
    and ``count``, at most ``budget`` counted tokens (an item over it alone is a call of its
    own)."""
    if not budget or count is None:
        return [(i, min(i + batch_size, len(items))) for i in range(0, len(items), batch_size)]
    ranges: list[tuple[int, int]] = []
    start, tokens = 0, 0
    for i, item in enumerate(items):
        n = count(item)
        if i > start and (i - start >= batch_size or tokens + n > budget):
            ranges.append((start, i))
            start, tokens = i, 0
        tokens += n
    if start < len(items):
        ranges.append((start, len(items)))
    return ranges
