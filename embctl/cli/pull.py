"""embctl pull."""

from __future__ import annotations

from pathlib import Path

import click

from embctl.cli.backend_flags import PullFlagsCommand
from embctl.cli.complete import complete_any
from embctl.cli.options import cache_dir_option, json_option, resolve_cache_dir


@click.command("pull", cls=PullFlagsCommand)
@click.argument("refs", nargs=-1, required=True, metavar="REF...", shell_complete=complete_any)
@click.option("--revision", "-r", default=None, help="Branch, tag or commit (same as REF@REV).")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Also fetch files matching GLOB (e.g. 'onnx/*'). Repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Skip files matching GLOB. Repeatable.")
@click.option("--from", "from_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Import a local model directory into the cache under REF.")
@click.option("--follow-links", is_flag=True,
              help="With --from: copy what symlinks leaving DIR point to (default: refuse).")
@click.option("--tensor", default=None,
              help="The tensor to extract, for backends with a tensor option (e.g. matrix:).")
@click.option("-O", "--option", "backend_options", multiple=True, metavar="KEY=VALUE",
              help="A backend option that changes what is pulled (onnx: variant). Repeatable.")
@cache_dir_option
@json_option
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def command(refs, revision, include, exclude, from_dir, follow_links, tensor,
            backend_options, cache_dir, as_json, quiet, **backend_flags):
    """Download models into the cache, fetching only the files their backend needs.

    \b
    Examples:
      embctl pull all-MiniLM-L6-v2                 # ~90 MB, not the repo's 1 GB of exports
      embctl pull BAAI/bge-small-en-v1.5@main
      embctl pull all-MiniLM-L6-v2 --include 'onnx/*'
      embctl pull all-MiniLM-L6-v2 --from ./my-model   # offline import of a local copy
      embctl pull matrix:Qwen/Qwen2.5-0.5B          # only the token-embedding tensor
      embctl pull onnx:all-MiniLM-L6-v2 --variant int8   # one ONNX file, for this CPU

    A second pull of an up-to-date model transfers nothing. Interrupted pulls resume.
    With HF_HUB_OFFLINE=1 a pull succeeds only if the model is already cached.
    """
    from dataclasses import replace

    from embctl.console import info, print_json
    from embctl.errors import UsageError
    from embctl.options import parse_pull_options
    from embctl.registry import get_backend, resolve

    if from_dir is not None and len(refs) != 1:
        raise UsageError("--from imports one directory: give exactly one REF")
    if follow_links and from_dir is None:
        raise UsageError("--follow-links goes with --from DIR")
    from embctl.stores.policy import max_size_from_env

    max_size = max_size_from_env()
    models = [resolve(r) for r in refs]  # validate every reference before any work
    if revision:
        models = [replace(m, revision=revision) for m in models]
    cache = resolve_cache_dir(cache_dir)
    results = []
    for model in models:
        backend = get_backend(model.backend)
        if tensor is not None and "tensor" not in {o.name for o in backend.options}:
            raise UsageError(f"{model.ref}: --tensor is not an option of the {backend.name} "
                             "backend")
        options = parse_pull_options(backend, backend_options, backend_flags)
        canonical = model.alias or (
            model.repo_id if backend.default else f"{backend.name}:{model.repo_id}"
        )
        model = replace(model, ref=canonical)
        summary = backend.pull(model, {
            "cache_dir": cache, "quiet": quiet or as_json, "include": include,
            "exclude": exclude, "tensor": tensor, "json": as_json, "from_dir": from_dir,
            "follow_links": follow_links, **options,
        })
        results.append(summary)
        if not quiet and not as_json:
            info(summary.get("message", f"pulled {model.ref}"))
    if max_size is not None:
        from embctl.console import warn
        from embctl.errors import EmbctlError
        from embctl.stores.policy import apply_max_size

        try:
            line = apply_max_size(cache, max_size, {m.repo_id for m in models})
        except (EmbctlError, OSError) as exc:  # the pull itself succeeded
            warn(f"EMBCTL_MAX_SIZE: nothing removed: {exc}")
        else:
            if line:
                info(line)
    if as_json:
        print_json(results)

