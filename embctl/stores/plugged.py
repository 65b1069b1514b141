"""The stores plugins register through ``register_stores``: loaded once, each failure isolated.

A plugin store that is malformed, or whose ``open``, ``scan`` or ``usage`` raises, costs one
warning naming its plugin, and every command goes on with the other stores, as a failing
plugin does (``embctl.plugins``).  Plugin stores keep their files under EMBCTL_HOME: ``ls``
loads them only when that folder holds something the core's stores do not own, so a listing
of models alone pays nothing for the plugin registry.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from embctl.stores.base import Store

T = TypeVar("T")
#: What the core keeps in EMBCTL_HOME itself: the vector caches, the blob-hash memo
#: (``embctl.models.blobcheck.MEMO``), the record of model uses (``embctl.models.uses``).
CORE_HOME_ENTRIES = frozenset({"vectors", "blob-hashes.json", "usage.json"})

_OWNER: dict[str, str] = {}  # store kind -> the plugin that registered it
_FAILED: set[str] = set()  # store kinds already warned about


def _problem(store: Any, taken: set[str]) -> str | None:
    """Why ``store`` cannot be a store (None when it can)."""
    kind = getattr(store, "kind", None)
    if not isinstance(kind, str) or not kind:
        return "a store needs a kind (a non-empty str)"
    if kind in taken:
        return f"store kind {kind!r} is already registered"
    lines = getattr(store, "du_lines", None)
    if not lines or not all(isinstance(line, tuple) and len(line) == 2 for line in lines):
        return f"store {kind!r}: du_lines must be (key, label) pairs"
    if not callable(getattr(store, "open", None)):
        return f"store {kind!r} has no open(cache_dir)"
    return None


@lru_cache(maxsize=1)
def plugin_stores(core: tuple[type[Store], ...]) -> tuple[type[Store], ...]:
    """The store classes plugins register, in plugin order (loads the plugins once); none
    may take a kind or a du key of the ``core`` stores."""
    from embctl.plugins import call_each, warn

    found: list[type[Store]] = []
    kinds = {s.kind for s in core}
    keys = {key for s in core for key, _label in s.du_lines} | {"total"}

    def register_for(plugin: str) -> Callable[[type[Store]], None]:
        def register(store: type[Store]) -> None:
            problem = _problem(store, kinds)
            if problem is None and keys & {key for key, _label in store.du_lines}:
                problem = f"store {store.kind!r}: a du key is already taken"
            if problem is not None:
                warn(f"plugin {plugin!r}: {problem}; ignored")
                return
            kinds.add(store.kind)
            keys.update(key for key, _label in store.du_lines)
            _OWNER[store.kind] = plugin
            found.append(store)
        return register

    call_each("register_stores", register_for)
    return tuple(found)


def _failed(kind: str, what: str, exc: Exception) -> None:
    from embctl.plugins import warn

    if kind not in _FAILED:
        _FAILED.add(kind)
        warn(f"plugin {_OWNER.get(kind, '?')!r}: store {kind!r} failed in {what}: "
             f"{type(exc).__name__}: {exc}")


def home_holds_more() -> bool:
    """EMBCTL_HOME holds something besides the core's own files (a plugin store's, maybe)."""
    from embctl.paths import embctl_home

    try:
        return any(p.name not in CORE_HOME_ENTRIES for p in embctl_home().iterdir())
    except OSError:
        return False


def open_guarded(cache_dir: Path, core: tuple[type[Store], ...]) -> list[Store]:
    """Every plugin store, opened; one that raises is left out, with one warning."""
    opened = []
    for store in plugin_stores(core):
        try:
            opened.append(store.open(cache_dir))
        except Exception as exc:  # one failing plugin must not break ls, du, rm, verify
            _failed(store.kind, "open", exc)
    return opened


def guarded(store: Store, what: str, call: Callable[[], T], default: T) -> T:
    """``call()``; for a plugin's store, ``default`` (and one warning) when it raises."""
    if store.kind not in _OWNER:
        return call()  # the core's own stores: a failure is a bug to see, not to hide
    try:
        return call()
    except Exception as exc:
        _failed(store.kind, what, exc)
        return default
