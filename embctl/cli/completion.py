"""embctl completion."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


def completion_script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    from embctl.cli import cli

    cls = get_completion_class(shell)
    return cls(cli, {}, "embctl", "_EMBCTL_COMPLETE").source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def command(shell):
    """Print the shell completion script for bash, zsh or fish.

    Model references complete from the aliases and the cache.

    \b
    Examples:
      embctl completion bash > ~/.local/share/bash-completion/completions/embctl
      embctl completion zsh > "${fpath[1]}/_embctl"
      embctl completion fish > ~/.config/fish/completions/embctl.fish

    The same scripts are in the repository's completions/ folder.
    """
    click.echo(completion_script(shell), nl=False)
