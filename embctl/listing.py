"""Filtering, sorting and rendering inventory entries for ``embctl ls``.

Tables are plain aligned text (like ``ollama list``) so ``ls`` stays fast and its output
greps; ``--json`` gives the same rows with integer byte sizes.
"""

from __future__ import annotations

import fnmatch
import operator
import re
import time
from collections.abc import Callable, Iterable

from embctl.console import human_age, human_size, parse_duration, parse_size, plural
from embctl.errors import UsageError
from embctl.inventory import STATUSES, Entry

_FILTER = re.compile(r"\s*([a-z_]+)\s*(>=|<=|!=|=|>|<)\s*(.+?)\s*$")
_OPS: dict[str, Callable] = {">": operator.gt, "<": operator.lt, ">=": operator.ge,
                             "<=": operator.le, "=": operator.eq, "!=": operator.ne}
TEXT_FIELDS = {"kind", "backend", "status", "ref", "repo", "repo_id"}
#: Filter keys spelled as ``hf cache ls --filter`` spells them: its ``type`` is our ``kind``
#: (``accessed`` is a key of its own below, as ``used``).
HF_KEYS = {"type": "kind"}
#: ``--sort`` keys, each with its default order (``hf cache ls``'s: names A-Z, the largest
#: and the most recently used first); ``accessed`` is hf's name for ``used``.
SORT_KEYS = {"name": "asc", "size": "desc", "used": "desc", "accessed": "desc"}
#: Every ``--sort`` value: a key, or a key with ``:asc`` or ``:desc`` (as hf takes them).
SORT_CHOICES = tuple(f"{key}{order}" for key in SORT_KEYS for order in ("", ":asc", ":desc"))


def parse_filter(expr: str) -> Callable[[Entry], bool]:
    """``size>1GB``, ``used>7d`` (not used for 7 days), ``kind=model``, ``backend!=st``.

    Every mistake is a usage error naming what is valid: an unknown key, operator or value
    (``kind=modle`` would otherwise silently match nothing), a malformed size or duration.
    """
    m = _FILTER.match(expr)
    if not m:
        raise UsageError(f"bad filter {expr!r} (examples: size>1GB, used>7d, kind=model)")
    key, op, value = m.groups()
    if key == "type" and value in ("dataset", "space"):  # hf lists them; we count them in du
        raise UsageError(f"bad filter {expr!r}: embctl lists models, vector caches and what "
                         "plugins store, not dataset or space repos (du counts those)")
    key = HF_KEYS.get(key, key)
    compare = _OPS[op]
    if key == "size":
        try:
            limit = parse_size(value)
        except ValueError as exc:
            raise UsageError(f"bad filter {expr!r}: {exc}") from None
        return lambda e: compare(e.size_bytes, limit)
    if key in ("used", "accessed", "age"):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise UsageError(f"bad filter {expr!r}: {exc}") from None
        now = time.time()
        return lambda e: compare(now - (e.last_used or 0), seconds)
    if key == "dim":
        if not value.isdigit():
            raise UsageError(f"bad filter {expr!r}: dim takes a number")
        return lambda e: e.dim is not None and compare(e.dim, int(value))
    if key in TEXT_FIELDS and op in ("=", "!="):
        attr = "repo_id" if key == "repo" else key
        _check_value(expr, key, value)
        return lambda e: (fnmatch.fnmatch(str(getattr(e, attr) or "-"), value)) == (op == "=")
    raise UsageError(
        f"bad filter {expr!r}: keys are size, used, dim (with < > <= >= = !=) and "
        "kind (or type), backend, status, ref, repo (with = or !=)"
    )


def _valid_values(key: str) -> tuple[str, ...] | None:
    """The values ``key`` can take, or None for free text (ref, repo)."""
    if key == "kind":  # the core's stores' kinds, and the installed plugins' stores'
        from embctl.stores import store_classes

        return tuple(store.kind for store in store_classes())
    if key == "status":
        return STATUSES
    if key == "backend":
        # The installed plugins' backends (loading them imports no heavy library), and "-"
        # for models whose backend is unknown.
        from embctl.registry import backends

        return (*backends(), "-")
    return None


def _check_value(expr: str, key: str, value: str) -> None:
    """A value (or glob) that no row could ever have is a mistake, not an empty result."""
    valid = _valid_values(key)
    if valid is None or any(fnmatch.fnmatchcase(v, value) for v in valid):
        return
    raise UsageError(f"bad filter {expr!r}: {key} is one of {', '.join(valid)}")


def select(entries: Iterable[Entry], pattern: str | None,
           checks: list[Callable[[Entry], bool]], sort: str,
           limit: int | None = None) -> list[Entry]:
    """Rows matching ``pattern`` and every check (from :func:`parse_filter`), sorted."""
    rows = [
        e for e in entries
        if (pattern is None or _matches(e, pattern)) and all(check(e) for check in checks)
    ]
    key, _, order = sort.partition(":")
    rows.sort(key=lambda e: (e.ref.lower(), e.kind))  # by name; ties of the others too
    descending = (order or SORT_KEYS.get(key, "asc")) == "desc"
    if key == "size":
        rows.sort(key=lambda e: e.size_bytes, reverse=descending)
    elif key in ("used", "accessed"):  # never used: the oldest
        rows.sort(key=lambda e: e.last_used or 0, reverse=descending)
    elif descending:
        rows.reverse()
    return rows[:limit] if limit else rows


def _matches(entry: Entry, pattern: str) -> bool:
    names = [entry.ref, entry.repo_id or ""]
    if any(c in pattern for c in "*?["):
        return any(fnmatch.fnmatch(n.lower(), pattern.lower()) for n in names)
    return any(pattern.lower() in n.lower() for n in names)


def _backend(entry: Entry) -> str:
    """The backend, and the values of the pull options its files were pulled with:
    ``onnx[int8]``, ``onnx[fp32,int8]`` when both variants are there; for a vector cache, the
    variant its vectors come from."""
    backend = entry.backend or "-"
    variant = (entry.extra.get("params") or {}).get("variant")
    if entry.kind == "vectors" and variant:  # a vector cache of one variant's weights
        return f"{backend}[{variant}]"
    pulled = entry.extra.get("pull_options")
    if not pulled or not isinstance(pulled, list):
        return backend
    values = sorted({str(v) for options in pulled if isinstance(options, dict)
                     for v in options.values()})
    return f"{backend}[{','.join(values)}]" if values else backend


def _items(entry: Entry) -> str:
    """Vectors of a cache, rows of a matrix; a model's files (``verify`` counts them)."""
    if entry.count is not None:
        return f"{entry.count:,}"
    files = entry.extra.get("files") if entry.kind == "model" else None
    return plural(files, "file") if isinstance(files, int) else "-"


def render_table(rows: list[Entry]) -> str:
    """The rows as ``ls`` prints them; NOTES, last, is what tells rows of one name apart (a
    vector cache's namespace id and prefix, a model's revisions when it has several)."""
    header = ("REF", "KIND", "BACKEND", "REVISION", "DIM", "ITEMS", "SIZE", "LAST USED", "STATUS",
              "NOTES")
    now = time.time()
    lines = [header]
    for e in rows:
        lines.append((
            e.ref,
            e.kind,
            _backend(e),
            (e.revision or "-")[:8],
            str(e.dim) if e.dim else "-",
            _items(e),
            human_size(e.size_bytes),
            human_age(e.last_used, now),
            e.status,
            e.notes,
        ))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    right = {4, 5, 6}
    out = []
    for row in lines:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
                 enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
