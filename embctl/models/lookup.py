"""When a reference names nothing: the close match to suggest, and the one line to print when
a command needs a model it does not have and cannot get (HF_HUB_OFFLINE=1, Hub unreachable).

Suggestions come from the aliases and the models in the cache, compared by name (backend
prefix and ``@revision`` aside), so ``all-MiniLM-L6v2`` gets ``did you mean
all-MiniLM-L6-v2?``.  Commands that only act on the cache (rm, verify, export) suggest only
what is cached; pull and embed also suggest aliases not pulled yet.
"""

from __future__ import annotations

import os
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embctl.errors import EmbctlError, UsageError
from embctl.refs import parse_ref

if TYPE_CHECKING:
    from embctl.backends import Backend, Embedder, Model

#: How alike (difflib ratio) a name must be to be suggested: one or two typos in a model name.
CUTOFF = 0.8


def cached_refs(cache_dir: str | os.PathLike[str]) -> list[str]:
    """What names each cached model repo: the reference it was pulled as, and its repo id."""
    from embctl.models.records import read_record
    from embctl.models.scan import scan_cache

    refs = []
    for repo in scan_cache(cache_dir):
        if repo.repo_type == "model":
            refs.append(read_record(repo.repo_id, Path(cache_dir)).get("ref") or repo.repo_id)
            refs.append(repo.repo_id)
    return refs


def _candidates(cache_dir: str | os.PathLike[str], every_alias: bool) -> set[str]:
    from embctl.registry import aliases

    names = set()
    for ref in cached_refs(cache_dir):
        try:
            names.add(parse_ref(ref).name)
        except UsageError:
            continue
    for alias in aliases().values():
        target = parse_ref(alias.target).name
        if every_alias or target in names:
            names |= {alias.name, target}
    return names


def closest(name: str, candidates: set[str]) -> str | None:
    """The candidate most like ``name`` (case aside), when it is alike enough; a repo id is
    also compared by its last part, so ``bge-small-en-v1.6`` finds ``BAAI/bge-small-en-v1.5``."""
    if name in candidates:  # a known name is no typo
        return None
    best, score = None, CUTOFF
    for cand in sorted(candidates, key=lambda c: ("/" in c, c)):  # ties: the short name
        keys = {cand} if "/" in name else {cand, cand.rsplit("/", 1)[-1]}
        ratio = max(SequenceMatcher(None, name.lower(), k.lower()).ratio() for k in keys)
        if ratio > score or ratio == score and best is None:
            best, score = cand, ratio
    return best


def did_you_mean(text: str, cache_dir: str | os.PathLike[str], *, every_alias: bool = True) -> str:
    """``"; did you mean X?"`` for a reference that names nothing, or ``""``.  Never raises:
    it only decorates an error already on its way out."""
    try:
        parsed = parse_ref(text)
        candidates = _candidates(cache_dir, every_alias)
        if parsed.backend:  # aliases take no prefix: only repo ids fit
            candidates = {c for c in candidates if "/" in c}
        match = closest(parsed.name, candidates)
    except Exception:  # a broken plugin or cache must not hide the error being reported
        return ""
    if match is None or match.rsplit("/", 1)[-1] == parsed.name:
        return ""  # the same repo (onnx:NAME is org/NAME): nothing to correct
    prefix = f"{parsed.backend}:" if parsed.backend else ""
    revision = f"@{parsed.revision}" if parsed.revision else ""
    return f"; did you mean {prefix}{match}{revision}?"


def not_in_cache(text: str, cache_dir: str | os.PathLike[str]) -> EmbctlError:
    """rm, verify: the reference names nothing cached (a close cached name, when there is one)."""
    return EmbctlError(f"{text}: not in the cache {cache_dir}"
                       f"{did_you_mean(text, cache_dir, every_alias=False)}")


def load_embedder(model: Model, backend: Backend, options: dict[str, Any]) -> Embedder:
    """``backend.load``, for embed and ``embctl.load``: a backend pulls a model it does not
    have; when the Hub cannot be asked, the error says the model is not cached and how to
    get it, whichever backend it came from, instead of the network's own words."""
    from embctl.backends import Embedder
    from embctl.models.hub import HubUnreachable
    from embctl.paths import hub_cache_dir

    try:
        embedder = backend.load(model, options)
    except HubUnreachable as exc:
        hint = did_you_mean(model.ref, hub_cache_dir(options.get("cache_dir")))
        fix = f"pull it first: embctl pull {model.ref}"
        fix = f"{hint} (otherwise {fix})" if hint else f"; {fix}"
        raise EmbctlError(f"{model.ref}: not cached, and {exc.reason}{fix}") from None
    if not isinstance(embedder, Embedder):  # the core reads the base class's members
        raise EmbctlError(f"backend {backend.name!r} (plugin {backend.plugin or '?'}): load() "
                          f"returned a {type(embedder).__name__}, not an "
                          "embctl.backends.Embedder; subclass it (see docs/plugins.md)")
    if embedder.model is None:
        embedder.model = model  # messages and the namespace's identity come from it
    return embedder
