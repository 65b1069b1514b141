"""The Python API: ``embctl.load(ref).embed(texts)``, on the same vector cache as the CLI.

    >>> import embctl
    >>> m = embctl.load("all-MiniLM-L6-v2")
    >>> m.embed(["The refund policy allows returns within 30 days"]).shape
    (1, 384)

The model is pulled when missing (unless HF_HUB_OFFLINE=1) and loaded on the first call that
needs it; texts already in the cache never reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from embctl.embed.session import Session


class EmbeddingModel:
    """A model ready to embed, with its metadata.  Create it with :func:`load`."""

    def __init__(self, session: Session) -> None:
        self._model = session.target.model
        self._embedder = session.embedder
        self._vectorizer = session.vectorizer
        self._session = session  # its close also lets go of the model's hold
        self.namespace: dict[str, Any] = session.namespace

    @property
    def ref(self) -> str:
        return self._model.ref

    @property
    def repo_id(self) -> str:
        return self._model.repo_id

    @property
    def backend(self) -> str:
        return self._model.backend

    @property
    def revision(self) -> str | None:
        """The resolved commit hash (or a local directory's fingerprint)."""
        return self.namespace.get("revision")

    @property
    def dim(self) -> int:
        return int(self._vectorizer.dim or self._embedder.dim)

    @property
    def cache_path(self) -> str | None:
        store = self._vectorizer.store
        return str(store.path) if store is not None else None

    def info(self) -> dict[str, Any]:
        """Everything known about the model, JSON-able."""
        return {"ref": self.ref, "backend": self.backend, "repo_id": self.repo_id,
                "revision": self.revision, "dim": self.dim, "namespace": self.namespace,
                "cache": self.cache_path}

    def embed(self, texts: Sequence[str] | str) -> np.ndarray:
        """A float32 array of shape (len(texts), dim); a single string gives shape (dim,)."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
        if not items:
            import numpy as np

            return np.zeros((0, self.dim), dtype=np.float32)
        matrix = self._vectorizer.embed_matrix(items)
        self._embedder.finish()
        return matrix[0] if single else matrix

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> EmbeddingModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingModel({self.ref!r}, revision={self.revision!r})"


def load(ref: str, *, device: str | None = None, normalize: bool = False, prefix: str = "",
         truncate_dim: int | None = None, batch_size: int | None = None, cache: bool = True,
         store_text: bool = False, cache_dir: str | None = None,
         **options: Any) -> EmbeddingModel:
    """Resolve ``ref`` (alias, repo id, ``backend:id``, or a local model directory) and
    return an :class:`EmbeddingModel`.  ``options`` are the backend's own (``embctl plugins``
    lists them; ``dimensions=256`` for ``openai:``), checked as ``embed -O`` checks them.
    Raises :class:`embctl.errors.EmbctlError` with a one-line message when the model cannot
    be found or pulled (:class:`embctl.errors.UsageError` for a bad option)."""
    from embctl.embed.session import open_session, select
    from embctl.errors import UsageError
    from embctl.options import load_options

    if not isinstance(cache, bool):  # cache="off" is truthy: it would silently write
        raise UsageError(f"cache must be True or False, not {cache!r}")
    target = select(ref, {"prefix": prefix})
    values = load_options(target.backend, given=options, flags={"truncate_dim": truncate_dim},
                          shared={"device": device, "normalize": normalize,
                                  "batch_size": batch_size})
    session = open_session(target, {**values, "quiet": True, "cache_dir": cache_dir},
                           cache="write" if cache else "off", batch_size=batch_size,
                           store_text=store_text)
    return EmbeddingModel(session)
