"""Shell completion of model references: aliases and what is in the cache."""

from __future__ import annotations


def _cached_refs() -> list[str]:
    """The references models were pulled as, their repo ids, and the names ``ls`` prints
    (one per model, however it was typed: ``embctl.naming``), vector caches' too."""
    from embctl.models.lookup import cached_refs
    from embctl.paths import hub_cache_dir
    from embctl.stores import open_stores, scan_all

    cache = hub_cache_dir()
    listed = [e.ref for e in scan_all(open_stores(cache, listing=True)) if e.repo_id]
    return [*cached_refs(cache), *listed]


def complete_cached(ctx, param, incomplete: str):
    """REFs of rm/verify/export: only what is cached."""
    from click.shell_completion import CompletionItem

    try:
        names = sorted(set(_cached_refs()))
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_any(ctx, param, incomplete: str):
    """REFs of pull/embed: aliases and cached models."""
    from click.shell_completion import CompletionItem

    try:
        from embctl.registry import aliases

        names = sorted(set(_cached_refs()) | set(aliases()))
    except Exception:
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]
