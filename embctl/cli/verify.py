"""embctl verify."""

from __future__ import annotations

import click

from embctl.cli.complete import complete_cached
from embctl.cli.options import cache_dir_option, json_option, resolve_cache_dir


@click.command("verify")
@click.argument("refs", nargs=-1, metavar="[REF]...", shell_complete=complete_cached)
@click.option("--repair", is_flag=True, help="Download bad or missing files again, then re-check.")
@click.option("--remote", is_flag=True,
              help="Also compare with the Hub's file listing (missing and unexpected files).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Files hashed at once (default: one per core).")
@cache_dir_option
@json_option
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def command(refs, repair, remote, jobs, cache_dir, as_json, quiet):
    """Check cached files against their content hashes, offline.

    Every blob is hashed against its name (sha256 for LFS files, git's blob sha1 for small
    ones), and snapshot links are checked for missing blobs. Exits 1 when anything is wrong.

    \b
    Examples:
      embctl verify                          # every cached model
      embctl verify all-MiniLM-L6-v2 --repair
      embctl verify --remote --json
    """
    from embctl.console import info, print_json
    from embctl.errors import EmbctlError
    from embctl.matrices.scan import select_matrices, verify_matrices
    from embctl.models.hub import is_offline, repo_dir
    from embctl.models.lookup import not_in_cache
    from embctl.models.scan import scan_cache, scan_repo
    from embctl.models.verify import check_and_repair, check_models, damaged_revisions
    from embctl.registry import get_backend, resolve
    from embctl.vectors.scan import drop_revision, select_vectors, verify_vectors

    if remote and is_offline():
        raise EmbctlError("verify --remote compares with the Hub, and HF_HUB_OFFLINE=1 forbids "
                          "contacting it: unset HF_HUB_OFFLINE or drop --remote")
    cache = resolve_cache_dir(cache_dir, must_exist=True)
    names: dict[str, str] = {}
    others = []  # (verify function, model) for vector caches and matrices
    if refs:
        repos = []
        for text in refs:
            model = resolve(text)
            repo = scan_repo(repo_dir(cache, model.repo_id)) if get_backend(
                model.backend).hub else None
            found = [select_vectors(model), select_matrices(model)]
            if repo is None and not any(found):
                raise not_in_cache(model.ref, cache)
            if repo is not None:
                repos.append(repo)
                names[repo.repo_id] = model.alias or model.repo_id
            others += [(verify_vectors, model), (verify_matrices, model)]
    else:
        repos = [r for r in scan_cache(cache) if r.repo_type == "model"]
        others = [(verify_vectors, None), (verify_matrices, None)]
    quiet = quiet or as_json
    dropped = []  # (ref, commit, caches): vectors computed before a repair of their model

    if repair:
        def announce(repo, problems):
            if not quiet:
                info(f"repairing {len(problems)} file(s) of {repo.repo_id}")

        repos, problems = check_and_repair(repos, cache, names, remote=remote, workers=jobs,
                                           quiet=quiet, on_repair=announce)
        dropped = [(ref, commit, drop_revision(repo_id, commit))
                   for repo_id, commit, ref in damaged_revisions(repos, problems, names)]
    else:
        problems = check_models(repos, cache, names, remote=remote, workers=jobs, quiet=quiet)
    checks = [c for fn, model in others for c in fn(model, repair=repair)]
    bad_checks = [c for c in checks if not c.ok]
    ok = all(p.repaired for p in problems) and all(c.ok or c.repaired for c in checks)
    files = sum(len(r.files) for repo in repos for r in repo.revisions)
    n_vectors = sum(1 for c in checks if c.to_json()["kind"] == "vectors")
    n_matrices = len(checks) - n_vectors
    if as_json:
        print_json({"ok": ok,
                    "checked": {"models": len(repos), "files": files, "vector_caches": n_vectors,
                                "matrices": n_matrices},
                    "problems": [p.to_json() for p in problems]
                    + [c.to_json() for c in bad_checks],
                    "dropped_vectors": [{"ref": ref, "revision": commit,
                                         "namespace": e.extra.get("namespace"),
                                         "count": e.count or 0} for ref, commit, caches in dropped
                                        for e in caches]})
    else:
        for p in problems:
            click.echo(p.describe())
        for ref, commit, caches in dropped:
            if caches:
                n = sum(e.count or 0 for e in caches)
                click.echo(f"{ref}@{commit[:8]}: dropped {n:,} vectors ({len(caches)} vector "
                           f"cache{'s' if len(caches) > 1 else ''}) computed before the repair; "
                           "the next embed computes them again")
        for c in bad_checks:
            for line in c.problems:
                click.echo(f"{c.entry.ref} ({c.to_json()['kind']} {c.entry.path}): {line}")
        count = len(problems) + len(bad_checks)
        if not quiet:
            info(f"checked {len(repos)} model(s) ({files} files), {n_vectors} vector cache(s), "
                 f"{n_matrices} matri{'x' if n_matrices == 1 else 'ces'}: "
                 + ("all OK" if ok and not count else
                    f"{count} problem(s)" + (", repaired" if ok else "")
                    + ("" if repair or ok else "; run with --repair to fix")))
    if not ok:
        raise SystemExit(1)
