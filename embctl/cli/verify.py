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
    from embctl.console import info, plural, print_json
    from embctl.errors import EmbctlError
    from embctl.models.hub import is_offline
    from embctl.registry import resolve
    from embctl.stores import open_stores
    from embctl.stores.base import VerifyOptions
    from embctl.stores.check import select_for_verify, verify_stores

    if remote and is_offline():
        raise EmbctlError("verify --remote compares with the Hub, and HF_HUB_OFFLINE=1 forbids "
                          "contacting it: unset HF_HUB_OFFLINE or drop --remote")
    cache = resolve_cache_dir(cache_dir, must_exist=True)
    selection = select_for_verify(open_stores(cache), cache, [resolve(text) for text in refs])
    quiet = quiet or as_json

    def announce(repo, problems):
        if not quiet:
            info(f"repairing {plural(len(problems), 'file')} of {repo.repo_id}")

    result = verify_stores(selection, VerifyOptions(repair=repair, remote=remote, workers=jobs,
                                                    quiet=quiet, on_repair=announce))
    problems = [p for report in result.reports for p in report.problems]
    if as_json:
        went = [(d, e) for after in result.dropped for d in after for e in d.entries]
        print_json({"ok": result.ok, "checked": result.checked,
                    "problems": [p.to_json() for p in problems],
                    "dropped_vectors": [{"ref": d.ref, "revision": d.commit,
                                         "namespace": e.extra.get("namespace"),
                                         "count": e.count or 0}
                                        for d, e in went if e.kind == "vectors"],
                    # what plugin stores derived from the revision (an ONNX export...)
                    "dropped": [{"kind": e.kind, "ref": d.ref, "revision": d.commit,
                                 "path": e.path} for d, e in went if e.kind != "vectors"],
                    # made again (or marked stale) from the files a repair replaced
                    "rebuilt": [f.to_json() for after in result.dropped for d in after
                                for f in d.rebuilt]})
    else:
        for report, after in zip(result.reports, result.dropped, strict=True):
            for p in report.problems:
                for line in p.lines():
                    click.echo(line)
            for d in after:
                caches = [e for e in d.entries if e.kind == "vectors"]
                if caches:
                    n = sum(e.count or 0 for e in caches)
                    click.echo(f"{d.ref}@{d.commit[:8]}: dropped {plural(n, 'vector')} "
                               f"({plural(len(caches), 'vector cache')}) computed before the "
                               "repair; the next embed computes them again")
                for e in d.entries:
                    if e.kind != "vectors":
                        click.echo(f"{d.ref}@{d.commit[:8]}: dropped the {e.kind} {e.path}, "
                                   "made before the repair")
                for line in (line for f in d.rebuilt for line in f.lines()):
                    click.echo(line)
        if not quiet:
            info(_summary(result, len(problems), repair))
    if not result.ok:
        raise SystemExit(1)


def _summary(result, count: int, repair: bool) -> str:
    """``verified 2 models (14 files), 3 vector caches: all ok``: what each store checked,
    in the words ``ls`` uses (a store that held nothing to check is left out)."""
    checked = ", ".join(r.summary for r in result.reports if any(r.checked.values()))
    if result.ok and not count:
        return f"verified {checked}: all ok" if checked else "verified nothing: nothing cached"
    from embctl.console import plural

    verdict = (plural(count, "problem") + (", repaired" if result.ok else "")
               + ("" if repair or result.ok else "; run with --repair to fix"))
    return f"verified {checked or 'nothing'}: {verdict}"
