"""Shell completion of model references: aliases and what is in the cache."""

from __future__ import annotations


def _cached_refs() -> list[str]:
    from embctl.models.lookup import cached_refs
    from embctl.paths import hub_cache_dir

    return cached_refs(hub_cache_dir())


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
