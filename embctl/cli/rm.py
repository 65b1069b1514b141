"""embctl rm."""

from __future__ import annotations

import sys

import click

from embctl.cli.complete import complete_cached
from embctl.cli.options import cache_dir_option, json_option, resolve_cache_dir


@click.command("rm")
@click.argument("refs", nargs=-1, metavar="[REF]...", shell_complete=complete_cached)
@click.option("--revision", "-r", default=None,
              help="Remove only this revision (branch, tag or commit) of each REF.")
@click.option("--vectors", "only_vectors", is_flag=True,
              help="Remove the vector caches of each REF (every namespace) instead of its model.")
@click.option("--namespace", "namespaces", multiple=True, metavar="ID",
              help="Remove one vector cache by namespace id or unique prefix (see ls --json).")
@click.option("--all", "everything", is_flag=True,
              help="Remove each REF's model files, matrices and vector caches.")
@click.option("--prune", is_flag=True,
              help="Also remove incomplete downloads, revisions no ref points to and blobs "
              "nothing references (in REFs, or the whole cache when none are given).")
@click.option("--filter", "filters", multiple=True, metavar="EXPR",
              help="Remove every model, vector cache and matrix matching EXPR, as ls --filter "
              "takes it (used>30d, size>1GB, kind=vectors, backend=st). Repeatable (all must "
              "match); not with REFs.")
@click.option("--max-size", default=None, metavar="SIZE",
              help="Remove incomplete and orphaned files, then the least recently used entries, "
              "until the caches fit in SIZE (10GB, 500MB). Not with REFs or --filter.")
@click.option("--dry-run/--no-dry-run", "-n", default=False,
              help="Print what would be removed (on stdout, as ls prints); remove nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@cache_dir_option
@json_option
def command(refs, revision, only_vectors, namespaces, everything, prune, filters, max_size,
            dry_run, yes, cache_dir, as_json):
    """Remove models, matrices or vector caches and report the space freed.

    REF takes the same forms as pull (an alias, org/name, BACKEND:ID, REF@REV), and
    the name ls prints in REF. By default the model's files go (for matrix: refs, the
    matrix; for remote APIs such as openai:, which keep no files, the vector caches).
    Computed vectors are kept unless --vectors or --all asks for them. Without a
    terminal, -y is required: embctl never waits on a prompt in scripts.

    \b
    Examples:
      embctl rm all-MiniLM-L6-v2 -y
      embctl rm BAAI/bge-small-en-v1.5@v1.0 --dry-run
      embctl rm all-MiniLM-L6-v2 --vectors -y    # its vector caches, not the model
      embctl rm --prune -y                       # incomplete, orphaned, detached
      embctl rm --filter 'used>30d' --dry-run    # what nobody used for a month
      embctl rm --max-size 20GB -y               # least recently used first
      embctl rm --namespace 469fded1 -y          # one vector cache (ls: NOTES ns=...)

    A model a running embctl holds (embed, export) is never removed by --filter or
    --max-size: it is named as skipped.
    """
    from dataclasses import replace

    from embctl.console import human_size, info, plural, print_json
    from embctl.errors import EmbctlError, UsageError
    from embctl.registry import resolve
    from embctl.stores import open_stores
    from embctl.stores.rm import plan_rm

    policy = bool(filters) or max_size is not None
    if not refs and not prune and not namespaces and not policy:
        raise UsageError("nothing to remove: give a REF, --namespace, --prune, --filter or "
                         "--max-size")
    if only_vectors and everything:
        raise UsageError("--vectors and --all cannot be combined")
    if policy and (refs or namespaces or revision or only_vectors or everything or prune):
        raise UsageError("--filter and --max-size select by themselves: not with REF, "
                         "--namespace, --revision, --vectors, --all or --prune")
    if filters and max_size is not None:
        raise UsageError("--filter and --max-size cannot be combined")
    skipped = ()
    if policy:
        plan, skipped = _plan_policy(filters, max_size, cache_dir)
    else:
        cache = resolve_cache_dir(cache_dir, must_exist=True)
        models = [resolve(r) for r in refs]
        if revision:
            models = [replace(m, revision=revision) for m in models]
        scope = "vectors" if only_vectors else "all" if everything else "default"
        plan = plan_rm(open_stores(cache), cache, models, scope=scope, namespaces=namespaces,
                       prune=prune)
    for entry in skipped:
        info(f"skipping {entry.kind} {entry.ref}: in use by a running embctl")
    # A dry run's plan is its result: stdout, as ls's table. A removal's lines are progress,
    # and what it freed a summary: stderr (as is the plan a prompt asks about).
    result = click.echo if dry_run else info
    if not plan:
        if as_json:
            print_json(_report(plan, dry_run, skipped, policy))
        else:
            result("nothing to remove")
        return
    verb = "would remove" if dry_run else ("removing" if yes else "will remove")
    if not as_json:
        for item in plan.items:
            result(f"{verb} {item.describe()}")
    elif not yes and not dry_run:  # the prompt says what it asks about
        for item in plan.items:
            info(f"{verb} {item.describe()}")
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise EmbctlError("not removing anything without confirmation: stdin is not a "
                              "terminal; pass -y to remove, or --dry-run to preview")
        if not click.confirm(f"Remove {plural(len(plan.items), 'item')}, freeing "
                             f"{human_size(plan.bytes_freed)}?", err=True):
            raise EmbctlError("nothing removed")
    if not dry_run and policy:
        from embctl.stores.policy import PolicyPlan, execute

        plan, busy = execute(PolicyPlan(plan), resolve_cache_dir(cache_dir, must_exist=True))
        for repo_id in busy:
            info(f"skipping {repo_id}: a running embctl started using it")
    elif not dry_run:
        plan.execute()
    if as_json:
        print_json(_report(plan, dry_run, skipped, policy))
    else:
        done = "would free" if dry_run else "freed"
        result(f"{done} {human_size(plan.bytes_freed)} ({plan.bytes_freed:,} bytes)")


def _plan_policy(filters, max_size, cache_dir):
    """(plan, skipped entries) for --filter or --max-size; usage errors before any scan."""
    from embctl.console import parse_size
    from embctl.errors import UsageError
    from embctl.listing import parse_filter
    from embctl.stores import open_stores
    from embctl.stores.policy import plan_filtered, plan_max_size

    checks = [parse_filter(expr) for expr in filters]
    limit = None
    if max_size is not None:
        try:
            limit = parse_size(max_size)
        except ValueError as exc:
            raise UsageError(f"bad --max-size {max_size!r}: {exc}") from None
    cache = resolve_cache_dir(cache_dir, must_exist=True)
    stores = open_stores(cache)
    found = (plan_filtered(stores, cache, checks) if limit is None
             else plan_max_size(stores, cache, limit))
    return found.plan, found.skipped


def _report(plan, dry_run, skipped, policy):
    """``rm --json``; with --filter or --max-size, also what was skipped (held)."""
    data = plan.to_json(dry_run)
    if policy:
        data["skipped"] = [{"kind": e.kind, "ref": e.ref, "repo_id": e.repo_id,
                            "reason": "in use"} for e in skipped]
    return data
