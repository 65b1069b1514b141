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
@click.option("--prune", is_flag=True,
              help="Also remove incomplete downloads, revisions no ref points to and blobs "
              "nothing references (in REFs, or the whole cache when none are given).")
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@cache_dir_option
@json_option
def command(refs, revision, prune, dry_run, yes, cache_dir, as_json):
    """Remove models from the cache and report the space freed.

    REF takes the same forms as pull: an alias, org/name, BACKEND:ID, REF@REV.
    Without a terminal, -y is required (embctl never waits on a prompt in scripts).

    \b
    Examples:
      embctl rm all-MiniLM-L6-v2 -y
      embctl rm BAAI/bge-small-en-v1.5@v1.0 --dry-run
      embctl rm --prune -y                      # incomplete, orphaned, detached
    """
    from dataclasses import replace

    from embctl.console import human_size, info, print_json
    from embctl.errors import EmbctlError, UsageError
    from embctl.models.hub import repo_dir
    from embctl.models.remove import RemovalPlan, execute, plan_prune, plan_repo, plan_revision
    from embctl.models.scan import scan_repo
    from embctl.registry import get_backend, resolve

    if not refs and not prune:
        raise UsageError("nothing to remove: give a REF, or --prune")
    cache = resolve_cache_dir(cache_dir)
    models = [resolve(r) for r in refs]
    if revision:
        models = [replace(m, revision=revision) for m in models]
    plan = RemovalPlan(cache)
    repos = []
    api_caches = _api_vector_caches(models)  # API models (openai:): their vector caches
    models = [m for m in models if get_backend(m.backend).hub]
    plan.items += [{"kind": "vectors", "ref": e.ref, "repo_id": e.repo_id, "revision": None,
                    "path": e.path, "freed_bytes": e.size_bytes} for e in api_caches]
    plan.freed_bytes += sum(e.size_bytes for e in api_caches)
    for model in models:
        repo = scan_repo(repo_dir(cache, model.repo_id))
        if repo is None:
            raise EmbctlError(f"{model.ref}: not in the cache {cache}")
        repos.append(repo)
        name = model.alias or model.repo_id
        plan.merge(plan_revision(cache, repo, model.revision, name) if model.revision
                   else plan_repo(cache, repo, name))
    if prune:
        plan.merge(plan_prune(cache, repos or None))
    if not plan.items:
        if as_json:
            print_json({"removed": [], "freed_bytes": 0, "dry_run": dry_run})
        else:
            info("nothing to remove")
        return
    verb = "would remove" if dry_run else ("removing" if yes else "will remove")
    if not as_json or not yes:
        for item in plan.items:
            what = item.get("ref") or item["repo_id"]
            if item.get("revision"):
                what += f"@{item['revision'][:8]}"
            info(f"{verb} {item['kind']} {what} ({human_size(item['freed_bytes'])})"
                 + (f": {item['path']}" if item["kind"] in ("incomplete", "blob") else ""))
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise EmbctlError("not removing anything without confirmation: stdin is not a "
                              "terminal; pass -y to remove, or --dry-run to preview")
        if not click.confirm(f"Remove {len(plan.items)} item(s), freeing "
                             f"{human_size(plan.freed_bytes)}?", err=True):
            raise EmbctlError("nothing removed")
    if not dry_run:
        execute(plan)
        _remove_files(api_caches)
    if as_json:
        print_json({"removed": plan.items, "freed_bytes": plan.freed_bytes, "dry_run": dry_run})
    else:
        done = "would free" if dry_run else "freed"
        info(f"{done} {human_size(plan.freed_bytes)} ({plan.freed_bytes:,} bytes)")


def _api_vector_caches(models) -> list:
    """The vector caches of models of API backends (no model files: nothing else is local)."""
    from embctl.errors import EmbctlError
    from embctl.registry import get_backend
    from embctl.vectors.scan import select_vectors

    found = []
    for model in models:
        if get_backend(model.backend).hub:
            continue
        entries = select_vectors(model)
        if not entries:
            raise EmbctlError(f"{model.ref}: no vector cache of this {model.backend} model "
                              "(the backend keeps no model files)")
        found += entries
    return found


def _remove_files(entries) -> None:
    from pathlib import Path

    from embctl.vectors.store import remove_files

    for entry in entries:
        remove_files(Path(entry.path))
