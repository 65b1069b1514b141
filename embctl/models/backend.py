"""``embctl.plugin.Backend``: the contract's :class:`embctl.backends.Backend` with the core's
Hub pull as its ``pull``.  The base class lives with the other contract types, which the pull
machinery itself imports; the default that needs that machinery lives here, above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embctl.backends import Backend as _Contract
from embctl.backends import Model

if TYPE_CHECKING:
    from embctl.models.pull import PullResult


class Backend(_Contract):
    __doc__ = _Contract.__doc__
    _core_defaults = True

    def pull(self, model: Model, options: dict[str, Any]) -> dict[str, Any]:
        """``embctl pull REF``: the Hub pull (``select_files``, the download, then
        ``after_pull``), or the import of ``options["from_dir"]``; for a backend whose models
        are not Hub repos (``hub = False``), nothing to pull.  Returns the JSON summary, whose
        ``message`` is the line ``embctl pull`` prints."""
        return hub_pull(self, model, options)


def hub_pull(backend: Backend, model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
    """``Backend.pull``'s default: the Hub pull (or, with ``from_dir``, the import of a local
    directory) and its summary, whose ``message`` is the line ``embctl pull`` prints."""
    from embctl.errors import UsageError
    from embctl.models.pull import pull

    if not backend.hub:
        raise UsageError(f"{model.ref}: the {backend.name} backend has nothing to pull")
    cache_dir = Path(options["cache_dir"])
    include, exclude = tuple(options.get("include") or ()), tuple(options.get("exclude") or ())
    if options.get("from_dir") is not None:
        from embctl.models.importer import import_dir

        result = import_dir(model, backend, cache_dir, Path(options["from_dir"]),
                            include=include, exclude=exclude,
                            follow_links=bool(options.get("follow_links")))
    else:
        result = pull(model, backend, cache_dir, include=include, exclude=exclude,
                      quiet=bool(options.get("quiet")),
                      options={k: options.get(k) for k in backend.pull_options})
    return {**result.to_json(), "message": summary_line(result)}


def summary_line(result: PullResult) -> str:
    """The line ``embctl pull`` prints for a Hub pull or an import."""
    from embctl.console import human_size, plural

    name = f"{result.repo_id}@{result.commit[:8]}"
    if result.extra.get("unchanged"):
        return (f"{result.extra['imported_from']}: the cache holds these {len(result.files)} "
                f"files already, as {name}; nothing imported")
    if result.extra.get("imported_from"):
        return (f"imported {name} from {result.extra['imported_from']}: "
                f"{plural(len(result.files), 'file')}, {human_size(result.total_bytes)}")
    chosen = result.extra.get("options")
    if chosen:
        name += " (" + ", ".join(f"{k}={v}" for k, v in chosen.items()) + ")"
    if result.up_to_date:
        how = " (offline, not checked for updates)" if result.offline else ""
        return (f"{name} is up to date{how}: {plural(len(result.files), 'file')}, "
                f"{human_size(result.total_bytes)}, nothing transferred")
    speed = result.downloaded_bytes / result.seconds if result.seconds else 0
    return (f"pulled {name}: {result.downloaded_files} of {plural(len(result.files), 'file')}, "
            f"{human_size(result.downloaded_bytes)} in {result.seconds:.1f}s "
            f"({human_size(int(speed))}/s); {human_size(result.total_bytes)} in cache")
