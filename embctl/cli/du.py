"""embctl du."""

from __future__ import annotations

import click

from embctl.cli.options import cache_dir_option, json_option, resolve_cache_dir


@click.command("du")
@cache_dir_option
@json_option
def command(cache_dir, as_json):
    """Show disk usage by category: models, vector caches, matrices, incomplete downloads.

    A blob shared between revisions or repos is counted once.

    \b
    Examples:
      embctl du
      embctl du --json | jq .total
    """
    from embctl.console import human_size, print_json
    from embctl.models.usage import disk_usage

    usage = disk_usage(resolve_cache_dir(cache_dir, must_exist=True))
    if as_json:
        print_json(usage)
        return
    labels = {"models": "models", "vectors": "vector caches", "matrices": "matrices",
              "incomplete": "incomplete downloads", "total": "total"}
    for key, label in labels.items():
        click.echo(f"{human_size(usage[key]):>10}  {label}")
