"""``rm`` by policy: what ``ls --filter`` selects, or the least recently used entries until the
caches fit in a size.  Both are one :class:`~embctl.stores.plan.RemovalPlan` over every store.

A model that a running embctl holds (``embctl.models.holds``) is never selected, and neither
is anything derived from it (its vector caches, a matrix of it): it is reported as skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embctl.stores.plan import RemovalPlan

if TYPE_CHECKING:
    from embctl.inventory import Entry
    from embctl.stores.base import Store

#: ``du`` keys that ``--max-size`` does not count: Hub repos other tools own.
NOT_OURS = frozenset({"other", "total"})


@dataclass(frozen=True)
class PolicyPlan:
    """The removals, and the entries left alone because a running embctl holds them."""

    plan: RemovalPlan
    skipped: tuple[Entry, ...] = ()


def _held(cache_dir: Path) -> Callable[[Entry], bool]:
    from embctl.models.holds import held

    known: dict[str, bool] = {}

    def check(entry: Entry) -> bool:
        if not entry.repo_id:
            return False
        if entry.repo_id not in known:
            known[entry.repo_id] = held(cache_dir, entry.repo_id)
        return known[entry.repo_id]

    return check


def _plan_entries(stores: Sequence[Store], entries: Sequence[Entry]) -> RemovalPlan:
    """One plan removing ``entries``, each by its own store."""
    by_kind = {store.kind: store for store in stores}
    plan = RemovalPlan()
    for entry in entries:
        plan += by_kind[entry.kind].plan_removal([entry])
    return plan


def plan_filtered(stores: Sequence[Store], cache_dir: Path,
                  checks: Sequence[Callable[[Entry], bool]]) -> PolicyPlan:
    """Every entry of every store matching all ``checks`` (``ls --filter``'s)."""
    from embctl.listing import select
    from embctl.stores import scan_all

    is_held = _held(cache_dir)
    chosen = select(scan_all(list(stores)), None, list(checks), "name")
    return PolicyPlan(_plan_entries(stores, [e for e in chosen if not is_held(e)]),
                      tuple(e for e in chosen if is_held(e)))


def plan_max_size(stores: Sequence[Store], cache_dir: Path, limit: int,
                  keep: Callable[[Entry], bool] | None = None) -> PolicyPlan:
    """Remove until the caches (every store's bytes but other tools' Hub repos, incomplete
    downloads included) fit in ``limit`` bytes: what ``--prune`` finds first, then entries
    from the least recently used (never used: first of all).  ``keep``: entries never to
    remove (the model a pull just brought), not reported as skipped."""
    from embctl.stores import disk_usage, scan_all

    usage = disk_usage(list(stores))
    total = sum(v for k, v in usage.items() if k not in NOT_OURS)
    plan = RemovalPlan()
    for store in stores:
        if total - plan.bytes_freed <= limit:
            return PolicyPlan(plan)
        plan += store.plan_prune(None)
    is_held = _held(cache_dir)
    skipped: list[Entry] = []
    for entry in sorted(scan_all(list(stores)), key=lambda e: (e.last_used or 0, e.ref)):
        if total - plan.bytes_freed <= limit:
            break
        if keep is not None and keep(entry):
            continue
        if is_held(entry):
            skipped.append(entry)
            continue
        plan += _plan_entries(stores, [entry])
    return PolicyPlan(plan, tuple(skipped))


def execute(found: PolicyPlan, cache_dir: Path) -> tuple[RemovalPlan, tuple[str, ...]]:
    """Execute the plan with every model it touches claimed (``embctl.models.holds``): what
    a running embctl came to hold since the plan was made is left out.  Returns the plan
    executed and the repo ids left out."""
    from embctl.models.holds import claimed

    with claimed(cache_dir, (i.repo_id for i in found.plan.items if i.repo_id)) as busy:
        plan = RemovalPlan(tuple(i for i in found.plan.items if i.repo_id not in busy))
        plan.execute()
    return plan, tuple(sorted(busy))


def max_size_from_env() -> int | None:
    """``EMBCTL_MAX_SIZE`` in bytes (None when unset or empty); a usage error when malformed,
    so a pull refuses before it downloads anything."""
    import os

    from embctl.console import parse_size
    from embctl.errors import UsageError

    text = os.environ.get("EMBCTL_MAX_SIZE", "").strip()
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"bad EMBCTL_MAX_SIZE {text!r}: {exc}") from None


def apply_max_size(cache_dir: Path, limit: int, pulled: set[str]) -> str | None:
    """The standing policy, after a successful pull: remove (for real) what ``rm --max-size``
    would, never the repos in ``pulled``; the one line to print, or None when nothing went."""
    from embctl.console import human_size
    from embctl.stores import open_stores

    found = plan_max_size(open_stores(cache_dir), cache_dir, limit,
                          keep=lambda e: e.repo_id in pulled)
    plan, _busy = execute(found, cache_dir)
    if not plan:
        return None
    names = ", ".join(f"{item.kind} {item.ref or item.path or item.repo_id}"
                      for item in plan.items)
    return (f"EMBCTL_MAX_SIZE={human_size(limit)}: removed {names} "
            f"(freed {human_size(plan.bytes_freed)})")
