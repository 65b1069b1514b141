"""Backends and aliases gathered from the plugins, and resolving references to models."""

from __future__ import annotations

import os
from dataclasses import replace
from functools import lru_cache

from embctl.backends import Alias, Backend, Model
from embctl.errors import UsageError
from embctl.plugins import PluginInfo, call_each, plugin_manager, warn
from embctl.refs import parse_ref, validate_api_model, validate_repo_id


def _collect(hook: str, kind: type, field: str) -> dict:
    """Call ``hook`` on every plugin; keep the first object registered under each name."""
    found: dict = {}
    infos = plugin_manager()[1]

    def register_for(plugin: str):
        def register(obj) -> None:
            if not isinstance(obj, kind):
                raise TypeError(f"{hook} expects a {kind.__name__}, got {type(obj)!r}")
            if obj.name in found:
                warn(f"plugin {plugin!r}: {kind.__name__.lower()} {obj.name!r} already "
                     "registered; ignored")
                return
            found[obj.name] = _with_plugin(obj, plugin)
            if plugin in infos:
                getattr(infos[plugin], field).append(obj.name)

        return register

    call_each(hook, register_for)
    return found


def _with_plugin(obj, plugin: str):
    """A copy of what a plugin registered, naming the plugin (its own object stays as is)."""
    if isinstance(obj, Backend):
        import copy

        found = copy.copy(obj)
        found.plugin = plugin
        return found
    return replace(obj, plugin=plugin)


@lru_cache(maxsize=1)
def backends() -> dict[str, Backend]:
    return _collect("register_backends", Backend, "backends")


@lru_cache(maxsize=1)
def aliases() -> dict[str, Alias]:
    return _collect("register_aliases", Alias, "aliases")


def plugin_infos() -> list[PluginInfo]:
    backends()
    aliases()
    return list(plugin_manager()[1].values())


def default_backend() -> Backend:
    for backend in backends().values():
        if backend.default:
            return backend
    raise UsageError("no default backend is installed: use an explicit BACKEND:ID reference")


def get_backend(name: str) -> Backend:
    found = backends().get(name)
    if found is None:
        known = ", ".join(sorted(backends())) or "none"
        raise UsageError(f"unknown backend {name!r} (installed: {known})")
    return found


def resolve(text: str, *, allow_path: bool = False) -> Model:
    """Resolve a reference: alias, prefix, bare name, revision; validated, offline."""
    if allow_path and _looks_like_path(text):
        path = os.path.abspath(os.path.expanduser(text))
        if not os.path.isdir(path):
            raise UsageError(f"{text!r}: no such model directory")
        backend = default_backend()
        return Model(text, backend.name, os.path.basename(path.rstrip("/")), local_path=path)
    parsed = parse_ref(text)
    alias = aliases().get(parsed.name)
    if alias is not None and parsed.backend is None:
        target = parse_ref(alias.target)
        backend = get_backend(target.backend) if target.backend else default_backend()
        revision = parsed.revision or target.revision
        return Model(text, backend.name, target.name, revision, alias=alias.name)
    backend = get_backend(parsed.backend) if parsed.backend else default_backend()
    name = parsed.name
    if not backend.hub:
        return Model(text, backend.name, validate_api_model(name, text), parsed.revision)
    for part in name.split("+"):
        validate_repo_id(part, text)
    if "/" not in name and "+" not in name and backend.bare_org:
        name = f"{backend.bare_org}/{name}"
    return Model(text, backend.name, name, parsed.revision)


def alias_for(repo_id: str) -> Alias | None:
    for alias in aliases().values():
        target = parse_ref(alias.target)
        if target.name == repo_id:
            return alias
    return None


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or os.sep in text and os.path.isdir(text)
