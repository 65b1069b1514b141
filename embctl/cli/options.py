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


def resolve_cache_dir(cache_dir: Path | None) -> Path:
    from embctl.paths import hub_cache_dir

    return hub_cache_dir(cache_dir)
