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
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@cache_dir_option
@json_option
def command(refs, revision, only_vectors, namespaces, everything, prune, dry_run, yes, cache_dir,
            as_json):
    """Remove models, matrices or vector caches and report the space freed.

    REF takes the same forms as pull: an alias, org/name, BACKEND:ID, REF@REV. By default
    the model's files go (for matrix: refs, the matrix; for remote APIs such as openai:,
    which keep no files, the vector caches). Computed vectors are kept unless --vectors or
    --all asks for them. Without a terminal, -y is required: embctl never waits on a prompt
    in scripts.

    \b
    Examples:
      embctl rm all-MiniLM-L6-v2 -y
      embctl rm BAAI/bge-small-en-v1.5@v1.0 --dry-run
      embctl rm all-MiniLM-L6-v2 --vectors -y    # its vector caches, not the model
      embctl rm --prune -y                       # incomplete, orphaned, detached
    """
    from dataclasses import replace

    from embctl.console import human_size, info, print_json
    from embctl.errors import EmbctlError, UsageError
    from embctl.registry import resolve
    from embctl.stores import open_stores
    from embctl.stores.rm import plan_rm

    if not refs and not prune and not namespaces:
        raise UsageError("nothing to remove: give a REF, --namespace or --prune")
    if only_vectors and everything:
        raise UsageError("--vectors and --all cannot be combined")
    cache = resolve_cache_dir(cache_dir, must_exist=True)
    models = [resolve(r) for r in refs]
    if revision:
        models = [replace(m, revision=revision) for m in models]
    scope = "vectors" if only_vectors else "all" if everything else "default"
    plan = plan_rm(open_stores(cache), cache, models, scope=scope, namespaces=namespaces,
                   prune=prune)
    if not plan:
        if as_json:
            print_json(plan.to_json(dry_run))
        else:
            info("nothing to remove")
        return
    verb = "would remove" if dry_run else ("removing" if yes else "will remove")
    if not as_json or not yes:
        for item in plan.items:
            info(f"{verb} {item.describe()}")
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise EmbctlError("not removing anything without confirmation: stdin is not a "
                              "terminal; pass -y to remove, or --dry-run to preview")
        if not click.confirm(f"Remove {len(plan.items)} item(s), freeing "
                             f"{human_size(plan.bytes_freed)}?", err=True):
            raise EmbctlError("nothing removed")
    if not dry_run:
        plan.execute()
    if as_json:
        print_json(plan.to_json(dry_run))
    else:
        done = "would free" if dry_run else "freed"
        info(f"{done} {human_size(plan.bytes_freed)} ({plan.bytes_freed:,} bytes)")
