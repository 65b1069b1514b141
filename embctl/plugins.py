"""Loading plugins from the ``embctl`` entry-point group.

Each plugin is loaded and each hook called on its own, so a plugin that raises on import or in a
hook costs one warning naming it, and every other command keeps working (llm #1280).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import lru_cache

import pluggy

from embctl import hookspecs

GROUP = "embctl"


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    error: str | None = None
    backends: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)


def warn(message: str) -> None:
    print(f"embctl: warning: {message}", file=sys.stderr)


def _entry_points() -> list:
    """The group's entry points; importlib.metadata only where the fast reader cannot go."""
    from embctl import entrypoints

    try:
        return entrypoints.find(GROUP)
    except entrypoints.Unreadable:
        from importlib.metadata import entry_points

        return list(entry_points(group=GROUP))


@lru_cache(maxsize=1)
def plugin_manager() -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        if ep.name in infos:
            continue
        dist = getattr(ep, "dist", None)
        version = getattr(ep, "version", None) or (dist.version if dist else None)
        info = PluginInfo(ep.name, ep.value, version)
        infos[ep.name] = info
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not break embctl
            info.error = f"{type(exc).__name__}: {exc}"
            warn(f"plugin {ep.name!r} ({ep.value}) failed to load: {info.error}")
    return pm, infos


def call_each(hook_name: str, register_for) -> None:
    """Call ``hook_name`` on every plugin separately; ``register_for(plugin)`` makes its callback.

    A plugin whose hook raises is reported once and skipped.
    """
    pm, infos = plugin_manager()
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        try:
            impl.function(register=register_for(impl.plugin_name))
        except Exception as exc:
            info = infos.get(impl.plugin_name)
            if info is not None:
                info.error = f"{type(exc).__name__}: {exc}"
            warn(f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}")
