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
    from embctl.matrices.scan import remove_matrices
    from embctl.models.hub import repo_dir
    from embctl.models.lookup import not_in_cache
    from embctl.models.remove import RemovalPlan, execute, plan_prune, plan_repo, plan_revision
    from embctl.models.scan import scan_repo
    from embctl.registry import get_backend, resolve
    from embctl.vectors.scan import remove_vectors

    if not refs and not prune and not namespaces:
        raise UsageError("nothing to remove: give a REF, --namespace or --prune")
    if only_vectors and everything:
        raise UsageError("--vectors and --all cannot be combined")
    cache = resolve_cache_dir(cache_dir, must_exist=True)
    models = [resolve(r) for r in refs]
    if revision:
        models = [replace(m, revision=revision) for m in models]
    plan = RemovalPlan(cache)
    repos = []
    later = []  # (kind, model, namespace, entry): vector caches and matrices
    for model in models:
        backend = get_backend(model.backend)
        found = False
        # A backend with its own pull (matrix:) keeps its models under EMBCTL_HOME; the
        # Hub repo of the same name holds only what it borrowed, and is not what REF names.
        if not only_vectors and backend.hub and backend.pull is None:
            repo = scan_repo(repo_dir(cache, model.repo_id))
            if repo is not None:
                found = True
                repos.append(repo)
                name = model.alias or model.repo_id
                plan.merge(plan_revision(cache, repo, model.revision, name) if model.revision
                           else plan_repo(cache, repo, name))
        if not only_vectors:
            for entry in remove_matrices(model, dry_run=True):
                found = True
                later.append(("matrix", model, None, entry))
        if only_vectors or everything or not backend.hub:
            for entry in remove_vectors(model, dry_run=True):
                found = True
                later.append(("vectors", model, entry.extra.get("namespace"), entry))
        if not found:
            raise (EmbctlError(f"{model.ref}: no vector caches") if only_vectors
                   else not_in_cache(model.ref, cache))
    for ns in namespaces:
        chosen = remove_vectors(None, ns, dry_run=True)
        if len(chosen) != 1:
            raise EmbctlError(f"--namespace {ns}: {'several' if chosen else 'no'} vector caches "
                              "match")
        later.append(("vectors", None, chosen[0].extra.get("namespace"), chosen[0]))
    for kind, _model, _ns, entry in later:
        plan.items.append({"kind": kind, "ref": entry.ref, "repo_id": entry.repo_id,
                           "revision": None, "path": entry.path, "freed_bytes": entry.size_bytes})
        plan.freed_bytes += entry.size_bytes
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
        for kind, model, ns, entry in later:
            if kind == "vectors":
                remove_vectors(None, ns)
            else:
                remove_matrices(model, key=entry.extra.get("key"))
    if as_json:
        print_json({"removed": plan.items, "freed_bytes": plan.freed_bytes, "dry_run": dry_run})
    else:
        done = "would free" if dry_run else "freed"
        info(f"{done} {human_size(plan.freed_bytes)} ({plan.freed_bytes:,} bytes)")
