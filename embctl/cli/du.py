"""embctl du."""

from __future__ import annotations

import click

from embctl.cli.options import cache_dir_option, json_option, resolve_cache_dir


@click.command("du")
@cache_dir_option
@json_option
def command(cache_dir, as_json):
    """Show disk usage by category: models, vector caches, plugins' stores, incomplete downloads.

    A blob shared between revisions or repos is counted once. Dataset and Space repos other
    tools put in the same Hugging Face cache are not models: they are counted apart, on the
    "other Hub repos" line, which is left out when there are none.

    \b
    Examples:
      embctl du
      embctl du --json | jq .total
    """
    from embctl.console import human_size, print_json
    from embctl.stores import disk_usage, du_lines, open_stores

    stores = open_stores(resolve_cache_dir(cache_dir, must_exist=True))
    usage = disk_usage(stores)  # each store's lines, in order, then the total
    if as_json:
        print_json(usage)
        return
    for key, label, optional in [*du_lines(stores), ("total", "total", False)]:
        if optional and not usage[key]:
            continue
        click.echo(f"{human_size(usage[key]):>10}  {label}")
