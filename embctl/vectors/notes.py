"""What tells vector caches apart, for ``ls``'s NOTES column and ``rm``'s plan (standard
library only).

Two caches of one model at one revision differ only by their namespace (``embctl/namespace.py``):
the prefix the pipeline added, the kind of input, and the backend's own settings
(``Embedder.params``: normalize, truncate_dim, dimensions...).  Each row's notes are its
namespace's short id (what ``rm --namespace`` takes), its prefix when it has one, its input
kind when it is not text, and the settings whose values differ among the caches that share its
name, backend and revision, so rows never look the same while a single cache stays one short
line.  ``ls --json`` has the fields themselves (``namespace``, ``params``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from embctl.inventory import Entry

#: Characters of the namespace id shown: what ``rm --namespace`` needs, in practice unique.
SHORT_ID = 8
#: The pipeline's keys, always noted when set; the variant, which BACKEND shows (onnx[int8]).
_OWN = ("prefix", "input_kind", "variant")
_LONGEST = 24  # characters of a setting's value shown


def annotate(entries: Iterable[Entry]) -> list[Entry]:
    """``entries`` (vector caches) with their notes (see the module's docstring)."""
    rows = list(entries)
    groups: dict[tuple, list[Entry]] = {}
    for e in rows:
        groups.setdefault((e.ref, e.backend, e.revision), []).append(e)
    differing = {key: _differing([_params(e) for e in group]) for key, group in groups.items()}
    return [replace(e, notes=notes(e, differing[(e.ref, e.backend, e.revision)]))
            for e in rows]


def notes(entry: Entry, keys: Iterable[str] = ()) -> str:
    """``ns=469fded1, prefix='query: ', truncate_dim=256``: the short id, the prefix and input
    kind when set, then the settings ``keys`` when this cache has them set."""
    params = _params(entry)
    parts = [f"ns={str(entry.extra.get('namespace') or '?')[:SHORT_ID]}"]
    if params.get("prefix"):
        parts.append(f"prefix={params['prefix']!r}")
    if params.get("input_kind") not in (None, "text"):
        parts.append(f"input_kind={params['input_kind']}")
    for key in sorted(keys):
        value = params.get(key)
        if value not in (None, False, "", [], {}):
            parts.append(key if value is True else f"{key}={_short(value)}")
    return ", ".join(parts)


def _params(entry: Entry) -> dict[str, Any]:
    params = entry.extra.get("params")
    return params if isinstance(params, dict) else {}


def _differing(params: list[dict[str, Any]]) -> list[str]:
    """The settings whose values are not the same in every one of ``params``."""
    if len(params) < 2:
        return []
    keys = {k for p in params for k in p if k not in _OWN}
    return [k for k in keys
            if len({json.dumps(p.get(k), sort_keys=True, default=str) for p in params}) > 1]


def _short(value: Any) -> str:
    """A setting's value in a few characters: a hash by its first 8, a long value cut."""
    if isinstance(value, (list, tuple)):
        text = "+".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    else:
        text = str(value)
    if len(text) >= 32 and all(c in "0123456789abcdef" for c in text):
        return text[:SHORT_ID]
    if len(text) > _LONGEST:
        text = text[:_LONGEST - 3] + "..."
    return repr(text) if isinstance(value, str) and (" " in text or not text) else text
