"""The vector-cache namespace of an embed run: everything that determines a vector besides the
input itself.  The core writes it, whatever the backend:

- the backend's own ``Embedder.params`` (normalize, dimensions, preprocessing...);
- the model's identity, from the resolved :class:`~embctl.backends.Model` and the embedder's
  resolved ``revision``: ``backend``, ``repo_id``, ``revision`` (``ls``, ``rm`` and
  ``export`` find a model's caches by these; a plugin need not know them);
- what the pipeline itself changes: ``prefix``, ``input_kind``, and ``v``, this layout's version.

The cache file is named by a hash of the canonical JSON of this dict (embctl/vectors/naming.py),
so a key added or dropped here orphans every cache: keep the result stable.
"""

from __future__ import annotations

from typing import Any

from embctl.backends import IDENTITY_KEYS, Embedder, Model, model_identity

#: Bump only with a migration: every existing cache would stop matching.
NAMESPACE_VERSION = 1
#: The keys the pipeline adds.
PIPELINE_KEYS = ("prefix", "input_kind", "v")
#: Keys a backend's ``params`` must not use: the core writes them.
RESERVED_KEYS = IDENTITY_KEYS + PIPELINE_KEYS


def namespace_for(model: Model, embedder: Any, *, prefix: str = "",
                  input_kind: str = "text") -> dict[str, Any]:
    """The namespace of ``embedder`` (loaded for ``model``) when inputs get ``prefix`` and are
    of ``input_kind``.  The core's identity keys win over a backend's own of the same name.

    An embedder that does not subclass :class:`Embedder` (a plugin older than the base class)
    keeps its ``namespace`` as it is; the identity keys it lacks are added.
    """
    if isinstance(embedder, Embedder):
        ns = dict(embedder.params)
        if embedder.namespace_identity:
            ns.update(model_identity(model, embedder.revision))
    else:
        ns = dict(getattr(embedder, "namespace", None) or {})
        for key, value in model_identity(model, getattr(embedder, "revision", None)).items():
            ns.setdefault(key, value)
    ns["prefix"] = prefix
    ns["input_kind"] = input_kind
    ns["v"] = NAMESPACE_VERSION
    return ns
