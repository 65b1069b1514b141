"""embctl plugins."""

from __future__ import annotations

import click

from embctl.cli.options import json_option


@click.command("plugins")
@json_option
def command(as_json):
    """List installed plugins (entry-point group 'embctl'), their backends with each
    backend's options, and their aliases.

    A plugin that fails to load is listed with its error; every other command keeps working.

    \b
    Examples:
      embctl plugins
      embctl plugins --json | jq '.[].backends[].options'
    """
    from embctl.console import print_json
    from embctl.options import describe, option_line
    from embctl.registry import aliases, backends, plugin_infos

    infos = plugin_infos()
    rows = []
    for info in infos:
        rows.append({
            "name": info.name,
            "module": info.module,
            "version": info.version,
            "backends": [
                {"name": b, "description": backends()[b].description,
                 "options": [describe(o) for o in backends()[b].options]}
                for b in info.backends
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
            lines = [option_line(o) for o in backends()[b["name"]].options]
            width = max((len(left) for left, _ in lines), default=0)
            for left, right in lines:
                click.echo(f"    {left.ljust(width)}  {right}".rstrip())
        for a in row["aliases"]:
            click.echo(f"  alias   {a['name']} -> {a['target']}")
