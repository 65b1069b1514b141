"""What a plugin registers: backends and aliases.

A backend is a plain data class whose fields are callables; plugins fill in what they support.
Every callable is invoked lazily, so a plugin module stays cheap to import: heavy libraries
(torch, transformers, openai, PIL) are imported inside ``load`` and friends, never at module
level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np


class Embedder(Protocol):
    """A loaded model, as returned by ``Backend.load``."""

    #: Vector dimension, once known.
    dim: int
    #: Everything that changes the output beyond the model itself (revision, options); part of
    #: the vector cache namespace.
    namespace: dict[str, Any]

    def embed(self, inputs: Sequence[Any]) -> np.ndarray:
        """Return a float32 array of shape (len(inputs), dim): a new array each call (the
        pipeline keeps it without copying; calls may run in parallel threads)."""
        ...


@dataclass(frozen=True)
class Model:
    """A reference resolved to a backend and what it names."""

    ref: str  # what the user typed
    backend: str  # backend name, e.g. "st"
    repo_id: str  # Hub repo id, or API model name for remote backends
    revision: str | None = None  # requested revision (None: the default branch)
    alias: str | None = None
    local_path: str | None = None  # a local model directory given as the reference

    @property
    def display(self) -> str:
        base = f"{self.backend}:{self.repo_id}"
        return f"{base}@{self.revision}" if self.revision else base


@dataclass(frozen=True)
class PullPlan:
    """What a pull must fetch from a Hub repo."""

    files: list[str]


@dataclass(frozen=True)
class Backend:
    """An embedding backend, registered by a plugin through ``register_backends``.

    name:          the reference prefix (``st`` in ``st:org/name``).
    description:   one line for ``embctl plugins``.
    hub:           True when models are Hugging Face Hub repos (pull/ls/rm/verify apply).
    default:       True for the backend that handles references without a prefix.
    bare_org:      organisation prepended to a bare name without '/', as sentence-transformers
                   does with ``sentence-transformers/<name>``.
    select_files:  given every file path in the repo, return those a pull must download.
                   ``None`` means every file.
    pull:          a custom pull, replacing the generic Hub download (e.g. range requests).
                   Called as ``pull(model, options) -> dict`` (a JSON-able summary).
    load:          ``load(model, options) -> Embedder``; options carry device, normalize, ...
    input_kind:    "text" or "image": what the embed pipeline feeds ``Embedder.embed``.
    input_adapter: ``input_adapter(options) -> InputAdapter``: what ``embed`` reads, keys and
                   hands to ``embed`` (embctl/embed/adapter.py); ``None``: texts.
    """

    name: str
    description: str = ""
    hub: bool = True
    default: bool = False
    bare_org: str | None = None
    select_files: Callable[[list[str]], list[str]] | None = None
    pull: Callable[..., dict[str, Any]] | None = None
    load: Callable[..., Embedder] | None = None
    input_kind: str = "text"
    input_adapter: Callable[[dict[str, Any]], Any] | None = None
    plugin: str = field(default="", compare=False)


@dataclass(frozen=True)
class Alias:
    """A short name for a model, registered through ``register_aliases``."""

    name: str
    target: str  # a full reference, e.g. "st:sentence-transformers/all-MiniLM-L6-v2"
    description: str = ""
    dim: int | None = None
    max_seq_length: int | None = None
    size_bytes: int | None = None  # approximate download size
    plugin: str = field(default="", compare=False)
