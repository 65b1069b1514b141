"""embctl ls."""

from __future__ import annotations

import click

from embctl.cli.options import cache_dir_option, json_option, resolve_cache_dir


@click.command("ls")
@click.argument("pattern", required=False)
@click.option("--sort", type=click.Choice(["name", "size", "used"]), default="name",
              show_default=True, help="Sort by name, size (largest first) or last use.")
@click.option("--filter", "filters", multiple=True, metavar="EXPR",
              help="Keep rows matching EXPR: size>1GB, used>7d, dim=384, kind=model, "
              "backend=st, status!=ok. Repeatable (all must match).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N rows.")
@cache_dir_option
@json_option
def command(pattern, sort, filters, limit, cache_dir, as_json):
    """List cached models, vector caches and matrices.

    PATTERN keeps rows whose reference or repo contains it (or matches it, with * ? []).

    \b
    Examples:
      embctl ls
      embctl ls --sort size --limit 5
      embctl ls --filter 'size>500MB' --filter 'used>30d'   # candidates for rm
      embctl ls 'BAAI/*' --json

    STATUS is ok, partial (a pull did not finish), incomplete (a download is in
    progress or was interrupted; a vector cache being created) or broken (files
    missing or unreadable: run embctl verify).
    """
    from embctl.console import info, print_json
    from embctl.listing import parse_filter, render_table, select
    from embctl.stores import open_stores, scan_all

    checks = [parse_filter(expr) for expr in filters]  # usage errors before any scanning
    cache = resolve_cache_dir(cache_dir, must_exist=True)
    rows = select(scan_all(open_stores(cache, listing=True)), pattern, checks, sort, limit)
    if as_json:
        print_json([e.to_json() for e in rows])
    elif rows:
        click.echo(render_table(rows))
    else:
        info("nothing cached" if not pattern and not filters else "no matching entries")
