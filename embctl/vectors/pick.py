"""Which vector cache ``embctl export REF --vectors`` means: REF's one readable cache, or the one
``--namespace`` names, narrowed to those embedded with ``--prefix`` when it is given.  Several
left is refused, listing them (each with what tells it apart), never guessed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from embctl.errors import EmbctlError, UsageError

if TYPE_CHECKING:
    from embctl.backends import Model
    from embctl.inventory import Entry


def pick_cache(model: Model, namespace: str | None = None,
               prefix: str | None = None) -> Entry:
    """The one cache of ``model`` (or the namespace ``namespace``, an id or its start) that
    the export reads."""
    from embctl.vectors.scan import select_vectors

    entries = [e for e in select_vectors(None if namespace else model, namespace)
               if e.status == "ok"]
    if prefix is not None:
        found = entries
        entries = [e for e in found if _params(e).get("prefix", "") == prefix]
        if found and not entries:
            have = sorted({repr(_params(e).get("prefix", "")) for e in found})
            raise EmbctlError(f"{model.ref}: no vector cache embedded with --prefix "
                              f"{prefix!r} (its caches have {', '.join(have)})")
    if not entries:
        raise EmbctlError(f"{model.ref}: no vector cache found (run `embctl embed` first)")
    if len(entries) > 1:
        listed = "; ".join(f"{e.extra['namespace'][:12]} ({_describe(e)})" for e in entries)
        raise UsageError(f"{model.ref} has {len(entries)} vector caches; pick one with "
                         f"--namespace: {listed}")
    return entries[0]


def _params(entry: Entry) -> dict:
    params = entry.extra.get("params")
    return params if isinstance(params, dict) else {}


def _describe(entry: Entry) -> str:
    from embctl.console import plural

    params = {k: v for k, v in _params(entry).items() if v not in (None, "", False)}
    rev = (entry.revision or "?")[:8]
    extra = ", ".join(f"{k}={v}" for k, v in params.items() if k != "input_kind")
    return f"@{rev}, {plural(entry.count or 0, 'vector')}" + (f", {extra}" if extra else "")
