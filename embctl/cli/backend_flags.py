"""Flags that backends declare (``Option(..., flag="--variant")``), added to a command.

The core names none of them: :class:`BackendFlagsCommand` asks the registry for the installed
backends when the command is parsed, completed or its help shown (not when its module is
imported), adds one click option per distinct flag, and lists them in ``--help`` under each
backend that declares them.  The values reach the command as keyword arguments named after the
option; :func:`flag_values` picks them out of ``ctx.params`` for ``load_options(flags=...)``,
which refuses, in one line, a flag given to a backend that does not declare it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from embctl.backends import Backend, Option


def declared(only: Callable[[Backend, Option], bool] | None = None
             ) -> list[tuple[Backend, list[Option]]]:
    """Each installed backend with the options it declares a flag for (``only`` filters)."""
    from embctl.registry import backends

    found = []
    for backend in backends().values():
        options = [o for o in backend.options
                   if o.flag and (only is None or only(backend, o))]
        if options:
            found.append((backend, options))
    return found


def _click_type(option: Option) -> Any:
    if option.type is int:
        return click.IntRange(min=option.minimum) if option.minimum is not None else click.INT
    if option.type is float:
        return click.FloatRange(min=option.minimum) if option.minimum is not None \
            else click.FLOAT
    return click.STRING  # choices and parsers: checked by load_options, naming the flag


def click_options(groups: Iterable[tuple[Backend, list[Option]]]) -> list[click.Option]:
    """One click option per distinct flag (the first declaration gives its type and help)."""
    made: dict[str, click.Option] = {}
    for _backend, options in groups:
        for option in options:
            if option.flag in made:
                continue
            names = [f"{option.flag}/--no-{option.flag[2:]}"] if option.type is bool \
                else [option.flag]
            made[option.flag] = click.Option(
                names + [option.name], default=None, type=None if option.type is bool
                else _click_type(option), help=option.help,
                metavar=option.metavar or ("|".join(option.choices) or None))
    return list(made.values())


def flag_values(ctx: click.Context, names: Iterable[str] = ()) -> dict[str, Any]:
    """``{option name: value}`` of the backend flags in ``ctx.params`` (and ``names``)."""
    wanted = {p.name for p in getattr(ctx.command, "backend_params", lambda: [])()}
    return {k: v for k, v in ctx.params.items() if k in wanted or k in names}


class BackendFlagsCommand(click.Command):
    """A command that also takes the flags backends declare (see the module docstring)."""

    #: Which declared options this command takes as flags (pull: the pull options only).
    flag_filter: Callable[[Backend, Option], bool] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._groups: list[tuple[Backend, list[Option]]] | None = None
        self._params: list[click.Option] | None = None

    def groups(self) -> list[tuple[Backend, list[Option]]]:
        if self._groups is None:
            self._groups = declared(self.flag_filter)
        return self._groups

    def backend_params(self) -> list[click.Option]:
        if self._params is None:
            own = {n for p in self.params for n in p.opts + p.secondary_opts}
            self._params = [p for p in click_options(self.groups()) if not own & set(p.opts)]
        return self._params

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        extra: list[click.Parameter] = list(self.backend_params())
        return params[:len(self.params)] + extra + params[len(self.params):]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        backend_names = {p.name for p in self.backend_params()}
        rows = [r for p in super().get_params(ctx)
                if isinstance(p, click.Option) and p.name not in backend_names
                for r in [p.get_help_record(ctx)] if r]
        if rows:
            with formatter.section("Options"):
                formatter.write_dl(rows)
        by_flag = {p.opts[0]: p for p in self.backend_params()}
        for backend, options in self.groups():
            records = []
            for option in options:
                param = by_flag.get(option.flag)
                record = param.get_help_record(ctx) if param is not None else None
                if record:
                    records.append((record[0], option.help))  # this backend's own words
            if records:
                with formatter.section(f"Backend flags ({backend.name})"):
                    formatter.write_dl(records)


def _pull_option(backend: Backend, option: Option) -> bool:
    return option.name in backend.pull_options


class PullFlagsCommand(BackendFlagsCommand):
    """``pull`` and ``export``: the declared flags of pull options only (onnx: ``--variant``)."""

    flag_filter = staticmethod(_pull_option)
