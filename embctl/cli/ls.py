"""embctl ls."""

from __future__ import annotations

import click

from embctl.cli.options import cache_dir_option, json_option, resolve_cache_dir
from embctl.listing import SORT_CHOICES


@click.command("ls")
@click.argument("pattern", required=False)
@click.option("--sort", type=click.Choice(SORT_CHOICES, case_sensitive=False), default="name",
              metavar="KEY[:ORDER]", show_default=True,
              help="Sort by name (A-Z), size (largest first) or used (most recent first; "
              "hf's accessed is the same); add :asc or :desc to choose the order.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="EXPR",
              help="Keep rows matching EXPR: size>1GB, used>7d, dim=384, kind=model (or "
              "type=model), backend=st, status!=ok. Repeatable (all must match).")
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
      embctl ls --sort used:asc                  # least recently used first
      embctl ls --filter 'size>500MB' --filter 'used>30d'   # candidates for rm
      embctl ls -f type=model                    # hf cache ls's spelling
      embctl ls 'BAAI/*' --json

    REF is the model's name, the same in every row of it, and what rm and verify
    take. ITEMS: a model's files, a cache's vectors. NOTES tell rows of one name
    apart: a vector cache's namespace id (rm --namespace ID) and prefix, and the
    settings it differs by from the model's other caches (--json: namespace, params).

    STATUS is ok, partial (a pull did not finish), incomplete (a download is in
    progress or was interrupted; a vector cache being created) or broken (files
    missing or unreadable: run embctl verify).
    """
    from embctl.console import print_json
    from embctl.listing import parse_filter, render_table, select
    from embctl.stores import open_stores, scan_all

    checks = [parse_filter(expr) for expr in filters]  # usage errors before any scanning
    cache = resolve_cache_dir(cache_dir, must_exist=True)
    rows = select(scan_all(open_stores(cache, listing=True)), pattern, checks, sort, limit)
    if as_json:
        print_json([e.to_json() for e in rows])
    elif rows:
        click.echo(render_table(rows))
    else:  # an empty listing is the result, on stdout as a table would be
        click.echo("nothing cached" if not pattern and not filters else "no matching entries")
