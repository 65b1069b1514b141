"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model cache to use instead of the Hugging Face cache "
    "(default: SENTENCE_TRANSFORMERS_HOME, HF_HUB_CACHE or HF_HOME/hub).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        from embctl.quiet import set_verbose

        set_verbose()


verbose_option = click.option(
    "-v", "--verbose", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
    help="Show the model libraries' own warnings, logs and progress bars (hidden by default: "
    "they go to EMBCTL_HOME/logs/libraries.log).")


def resolve_cache_dir(cache_dir: Path | None, *, must_exist: bool = False) -> Path:
    """The model cache; an explicit --cache-dir that is (under) a file is refused, and a
    missing one too with ``must_exist`` (ls, du, verify, rm: a typo is not an empty cache)."""
    from embctl.paths import check_folder, hub_cache_dir

    cache = hub_cache_dir(cache_dir)
    if cache_dir is not None:
        check_folder(cache, "--cache-dir", must_exist=must_exist)
    return cache

#: embed's own flags that are shorthands for the backend options of the same names (``-O K=V``):
#: those several backends share (st, onnx, image: device; all but openai: normalize; st, onnx:
#: truncate_dim).  A flag of one backend is declared by it (``Option(flag=...)``).
OPTION_SHORTHANDS = ("device", "normalize", "truncate_dim")
