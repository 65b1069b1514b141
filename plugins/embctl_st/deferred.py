"""sentence-transformers without scikit-learn's import cost.

``import sentence_transformers`` runs ``from sklearn.metrics import pairwise_distances``
(``sentence_transformers.util.similarity``), which imports scikit-learn and SciPy: about a
second and a half of a cold ``embctl embed`` on 2 cores, for a function that only the
Manhattan similarity helpers call and embedding never does.

`sklearn_deferred` puts a stand-in for ``sklearn.metrics`` in ``sys.modules`` while
sentence-transformers imports, and takes it out right after: each name imported from it is a
function that imports the real ``sklearn.metrics`` when first called and calls the real one.
Nothing else changes: a process that imported scikit-learn already, or that lacks it, gets the
plain import; after the import, ``import sklearn.metrics`` anywhere imports the real module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

MODULE = "sklearn.metrics"


def _later(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(MODULE), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{MODULE}.{name}, imported when first called."
    return call


def _stand_in() -> types.ModuleType:
    module = types.ModuleType(MODULE, f"A stand-in for {MODULE} (embctl_st.deferred).")

    def attribute(name: str) -> Callable[..., Any]:
        if name.startswith("__"):  # the import system's questions (__path__, __spec__...)
            raise AttributeError(name)
        return _later(name)

    module.__getattr__ = attribute  # type: ignore[method-assign]
    return module


@contextmanager
def sklearn_deferred() -> Iterator[None]:
    """While the block runs (``import sentence_transformers``), ``from sklearn.metrics
    import X`` gives a function that imports the real X when called."""
    if "sklearn" in sys.modules or MODULE in sys.modules:
        yield  # imported already: nothing to save
        return
    try:
        if importlib.util.find_spec("sklearn") is None:
            yield  # not installed: the import fails as it would have
            return
    except (ImportError, ValueError):
        yield
        return
    stand_in = _stand_in()
    sys.modules[MODULE] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(MODULE) is stand_in:
            del sys.modules[MODULE]
