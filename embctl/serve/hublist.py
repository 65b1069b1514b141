"""``GET /api/models``: the models the cache holds, filtered and paged as the Hub lists its
models (what ``HfApi.list_models`` sends and follows).

Understood: ``search`` (a case-insensitive substring of the repo id), ``author`` (the
namespace, any case), ``filter`` (tags every listed model has: ``sentence-transformers``,
``sentence-similarity``), ``pipeline_tag``, ``limit`` (models per page, at most
:data:`PAGE`), ``skip`` (models before this page), ``full`` (adds ``siblings``) and
``expand`` (keeps only the named properties).  The rest (``sort``, ``direction``,
``cardData``...) is accepted and ignored: the cache keeps no downloads, likes or dates to
sort by, so models come in repo-id order.

Pages follow the Hub's protocol: when more models match, the answer carries
``Link: <.../api/models?...&skip=N>; rel="next"``, which huggingface_hub follows (and stops
following once it has ``limit`` models).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

Query = Mapping[str, list[str]]
#: Models per page at most (the Hub's cap too).
PAGE = 1000


@dataclass(frozen=True)
class ListQuery:
    search: str | None = None
    author: str | None = None
    tags: tuple[str, ...] = ()
    pipeline_tag: str | None = None
    limit: int = PAGE
    skip: int = 0
    full: bool = False
    expand: tuple[str, ...] = ()


def _last(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _count(query: Query, name: str, default: int, least: int) -> int:
    text = _last(query, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise ValueError(f"'{name}' must be an integer of at least {least}, not {text!r}")
    return value


def parse_query(query: Query) -> ListQuery:
    """The listing's query; `ValueError` (one line, for a 400) for a bad ``limit`` or
    ``skip``."""
    from embctl.serve.hubapi import truthy

    search = (_last(query, "search") or "").strip() or None
    author = (_last(query, "author") or "").strip() or None
    tags = tuple(t for t in query.get("filter", []) + query.get("filter[]", []) if t)
    expand = tuple(query.get("expand", []) + query.get("expand[]", []))
    return ListQuery(search, author, tags, _last(query, "pipeline_tag") or None,
                     min(_count(query, "limit", PAGE, 1), PAGE), _count(query, "skip", 0, 0),
                     truthy(_last(query, "full")), expand)


def wanted_id(repo_id: str, q: ListQuery) -> bool:
    """What ``search`` and ``author`` ask, from the repo id alone (before any file is read)."""
    if q.search and q.search.lower() not in repo_id.lower():
        return False
    if q.author:
        owner = repo_id.split("/")[0] if "/" in repo_id else ""
        return owner.lower() == q.author.lower()
    return True


def wanted(item: Mapping[str, Any], q: ListQuery) -> bool:
    """What ``filter`` and ``pipeline_tag`` ask, from a model's listed properties."""
    tags = set(item.get("tags") or ()) | {item.get("library_name")}
    if any(t not in tags for t in q.tags):
        return False
    return q.pipeline_tag is None or item.get("pipeline_tag") == q.pipeline_tag


def page(items: list[dict[str, Any]], q: ListQuery) -> tuple[list[dict[str, Any]], int | None]:
    """(this page's models, the ``skip`` of the next page or None when this is the last)."""
    end = q.skip + q.limit
    return items[q.skip:end], end if end < len(items) else None


def next_link(url: str, skip: int) -> str:
    """The ``Link`` header's value for the page at ``skip``, with the request's other
    parameters (a Hub ``cursor`` dropped: ``skip`` is this mirror's)."""
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in ("skip", "cursor")]
    query = urlencode([*pairs, ("skip", str(skip))])
    return f'<{urlunsplit(parts._replace(query=query))}>; rel="next"'
