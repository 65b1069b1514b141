"""embctl plugins."""

from __future__ import annotations

import click

from embctl.cli.options import json_option


@click.command("plugins")
@json_option
def command(as_json):
    """List installed plugins (entry-point group 'embctl'), their backends and aliases.

    A plugin that fails to load is listed with its error; every other command keeps working.

    \b
    Examples:
      embctl plugins
      embctl plugins --json | jq '.[].backends'
    """
    from embctl.console import print_json
    from embctl.registry import aliases, backends, plugin_infos

    infos = plugin_infos()
    rows = []
    for info in infos:
        rows.append({
            "name": info.name,
            "module": info.module,
            "version": info.version,
            "backends": [
                {"name": b, "description": backends()[b].description} for b in info.backends
            ],
            "aliases": [
                {"name": a, "target": aliases()[a].target, "dim": aliases()[a].dim,
                 "description": aliases()[a].description} for a in info.aliases
            ],
            "error": info.error,
        })
    if as_json:
        print_json(rows)
        return
    for row in rows:
        status = f"  FAILED: {row['error']}" if row["error"] else ""
        click.echo(f"{row['name']} {row['version'] or '?'} ({row['module']}){status}")
        for b in row["backends"]:
            click.echo(f"  backend {b['name']}: {b['description']}")
        for a in row["aliases"]:
            click.echo(f"  alias   {a['name']} -> {a['target']}")
