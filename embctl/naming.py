"""The one name ``ls``, ``rm`` and ``verify`` show for a backend's model, whatever it was typed as.

A model is typed many ways (``onnx:all-MiniLM-L6-v2``, ``onnx:sentence-transformers/
all-MiniLM-L6-v2``; ``all-MiniLM-L6-v2``, ``st:sentence-transformers/all-MiniLM-L6-v2``), and
its model row and vector caches each recorded the form typed when they were made.  Rows are
named from what they are instead (the backend and the repo id): an alias that names exactly
that model (``BACKEND:alias`` for another backend), else its repo id, with ``BACKEND:`` in
front but for the default backend.  A name
is kept only when :func:`embctl.registry.resolve` takes it back to the same model, so every
name ``ls`` prints is a reference ``rm`` and ``verify`` accept; when none does (a local
folder's vector caches, an uninstalled backend's), the recorded reference is shown as before.
"""

from __future__ import annotations


def row_name(backend: str | None, repo_id: str | None, recorded: str | None = None) -> str:
    """The name of ``backend``'s model ``repo_id``; when no name resolves back to that model,
    ``recorded`` (the reference its files recorded), else ``BACKEND:repo_id``.  Never
    raises."""
    if not backend or not repo_id:
        return recorded or repo_id or "-"
    fallback = recorded or f"{backend}:{repo_id}"
    try:
        for name in _candidates(backend, repo_id):
            if _names(name, backend, repo_id):
                return name
    except Exception:  # a broken plugin must not break a listing: the recorded name
        return fallback
    return fallback


def _candidates(backend: str, repo_id: str) -> list[str]:
    """Aliases first (registered order; ``BACKEND:alias`` for an alias of the repo run by
    another backend, as ``onnx:all-MiniLM-L6-v2`` is typed), then the repo id, then
    ``BACKEND:repo_id``."""
    from embctl.errors import UsageError
    from embctl.refs import parse_ref
    from embctl.registry import aliases, default_backend

    try:
        default: str | None = default_backend().name
    except UsageError:  # no default backend installed: every name takes a prefix
        default = None
    names = []
    for alias in aliases().values():
        target = parse_ref(alias.target)
        if target.name != repo_id or target.revision:
            continue
        if (target.backend or default) == backend:
            names.append(alias.name)
        else:  # the repo run by another backend: kept if that backend takes the alias
            names.append(f"{backend}:{alias.name}")
    if backend == default:
        names.append(repo_id)
    names.append(f"{backend}:{repo_id}")
    return names


def _names(text: str, backend: str, repo_id: str) -> bool:
    """``text`` resolves to ``backend``'s ``repo_id``, at no pinned revision."""
    from embctl.errors import UsageError
    from embctl.registry import resolve

    try:
        model = resolve(text)
    except UsageError:
        return False
    return (model.backend, model.repo_id, model.revision) == (backend, repo_id, None)
