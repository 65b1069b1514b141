"""Opening an embedding session, for ``embctl embed`` and ``embctl.load()`` alike.

    select(ref, adapter_options) -> Target: the reference resolved, its backend, its input
        adapter (cheap: nothing is loaded, so the CLI can check its input and output first)
    open_session(target, load_options) -> Session: the embedder loaded (pulled when missing,
        through embctl.models.lookup.load_embedder), the cache namespace, the vector cache,
        the Vectorizer

``load_options`` go to ``Backend.load`` as given; ``adapter_options`` to the backend's
``input_adapter`` factory (embctl/embed/adapter.py).  Neither is interpreted here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embctl.console import warn
from embctl.errors import UsageError
from embctl.namespace import namespace_for

if TYPE_CHECKING:
    from embctl.backends import Backend, Embedder, Model
    from embctl.embed.adapter import InputAdapter
    from embctl.embed.vectorizer import Vectorizer
    from embctl.vectors.store import VectorStore

#: ``open_session(cache=...)``: read and write (the file is created by the first commit),
#: read only what exists (dry runs: create nothing), or no cache at all.
CACHE_MODES = ("write", "read", "off")


@dataclass(frozen=True)
class Target:
    """What a reference names, before anything is loaded."""

    model: Model
    backend: Backend
    adapter: InputAdapter


@dataclass
class Session:
    """A loaded model on its vector cache, ready to embed."""

    target: Target
    embedder: Embedder
    namespace: dict[str, Any]
    vectorizer: Vectorizer
    #: The model held in use while the session is open (``embctl.models.holds``), or None.
    hold: int | None = None

    @property
    def store(self) -> VectorStore | None:
        """The vector cache (None without one, or once disabled by a failure)."""
        return self.vectorizer.store

    def close(self) -> None:
        try:
            self.vectorizer.close()
        finally:
            if self.hold is not None:
                import os

                os.close(self.hold)
                self.hold = None


def select(ref: str, adapter_options: dict[str, Any] | None = None) -> Target:
    """Resolve ``ref`` (alias, repo id, ``backend:id`` or a local model directory) to a
    backend that can embed, and make its input adapter."""
    from embctl.embed.adapter import adapter_for
    from embctl.registry import get_backend, resolve

    model = resolve(ref, allow_path=True)
    backend = get_backend(model.backend)
    if not backend.overrides("load"):
        raise UsageError(f"backend {backend.name!r} cannot embed")
    return Target(model, backend, adapter_for(backend, adapter_options))


def with_adapter(target: Target, options: dict[str, Any]) -> Target:
    """``target`` with its adapter made from ``options``: ``prefix`` and the backend's load
    options, typed (the image backend's ``path_field``, from ``--path-field`` or ``-O``)."""
    from embctl.embed.adapter import adapter_for

    return Target(target.model, target.backend, adapter_for(target.backend, options))


def open_session(target: Target, load_options: dict[str, Any], *, cache: str = "write",
                 batch_size: int | None = None, store_text: bool = False,
                 concurrency: int | None = None) -> Session:
    """Load the model and open its cache (``cache``: one of :data:`CACHE_MODES`)."""
    from embctl.embed.vectorizer import Vectorizer
    from embctl.models.lookup import load_embedder

    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}, not {cache!r}")
    hold = _use(target, load_options)
    try:
        embedder = load_embedder(target.model, target.backend, load_options)
    except BaseException:
        if hold is not None:
            import os

            os.close(hold)
        raise
    namespace = namespace_for(target.model, embedder, prefix=target.adapter.prefix,
                              input_kind=target.adapter.kind)
    ref = target.model.ref
    store = None
    if cache == "write":
        store = open_store(namespace, ref, embedder)
        if store is not None and store_text:
            store.mark_stores_text()  # with the first write (none: the file stays as it is)
    elif cache == "read":
        from embctl.vectors.naming import store_path

        if store_path(namespace).exists():
            store = open_store(namespace, ref)
    vectorizer = Vectorizer(embedder, store, target.adapter, batch_size=batch_size,
                            store_text=store_text, concurrency=concurrency)
    return Session(target, embedder, namespace, vectorizer, hold)


def _use(target: Target, load_options: dict[str, Any]) -> int | None:
    """Hold a Hub model in use for the session, and record the use (not a local folder's, not
    a remote API's, which keep nothing in the cache)."""
    model = target.model
    if model.local_path or not target.backend.hub or target.backend.overrides("pull"):
        return None
    from embctl.models.uses import use_model
    from embctl.paths import hub_cache_dir

    return use_model(hub_cache_dir(load_options.get("cache_dir")), model.repo_id)


def open_store(namespace: dict[str, Any], ref: str, embedder: Embedder | None = None
               ) -> VectorStore | None:
    """The namespace's cache, or None (with one warning) when it cannot be opened.  A missing
    file is created by the first commit: a run that commits nothing leaves none."""
    from embctl.vectors.store import VectorStore

    try:
        return VectorStore.open(namespace, ref=ref, create=False,
                                dim=embedder.expected_dim if embedder else None)
    except (sqlite3.Error, OSError) as exc:
        warn(f"vector cache unavailable ({exc}); embedding without it")
        return None
