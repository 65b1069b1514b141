"""embctl pull."""

from __future__ import annotations

from pathlib import Path

import click

from embctl.cli.complete import complete_any
from embctl.cli.options import cache_dir_option, json_option, resolve_cache_dir


@click.command("pull")
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
@click.option("--variant", default=None,
              help="For backends with a variant option (onnx: fp32, int8): which weights.")
@click.option("-O", "--option", "backend_options", multiple=True, metavar="KEY=VALUE",
              help="A backend option that changes what is pulled (onnx: variant). Repeatable.")
@cache_dir_option
@json_option
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
def command(refs, revision, include, exclude, from_dir, follow_links, tensor, variant,
            backend_options, cache_dir, as_json, quiet):
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
    from embctl.models.importer import import_dir
    from embctl.models.pull import pull
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
        options = parse_pull_options(backend, backend_options, variant)
        canonical = model.alias or (
            model.repo_id if backend.default else f"{backend.name}:{model.repo_id}"
        )
        model = replace(model, ref=canonical)
        if backend.pull is not None:
            summary = backend.pull(model, {
                "cache_dir": cache, "quiet": quiet or as_json, "include": include,
                "exclude": exclude, "tensor": tensor, "json": as_json, "from_dir": from_dir,
                **options,
            })
            results.append(summary)
            if not quiet and not as_json:
                info(summary.get("message", f"pulled {model.ref}"))
            continue
        if not backend.hub:
            raise UsageError(f"{model.ref}: the {backend.name} backend has nothing to pull")
        if from_dir is not None:
            result = import_dir(model, backend, cache, from_dir, include=include,
                                exclude=exclude, follow_links=follow_links)
        else:
            result = pull(model, backend, cache, include=include, exclude=exclude,
                          quiet=quiet or as_json, options=options)
        results.append(result.to_json())
        if not quiet and not as_json:
            info(_summary(result))
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


def _summary(result) -> str:
    from embctl.console import human_size, plural

    name = f"{result.repo_id}@{result.commit[:8]}"
    if result.extra.get("unchanged"):
        return (f"{result.extra['imported_from']}: the cache holds these {len(result.files)} "
                f"files already, as {name}; nothing imported")
    if result.extra.get("imported_from"):
        return (f"imported {name} from {result.extra['imported_from']}: "
                f"{plural(len(result.files), 'file')}, {human_size(result.total_bytes)}")
    options = result.extra.get("options")
    if options:
        name += " (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"
    if result.up_to_date:
        how = " (offline, not checked for updates)" if result.offline else ""
        return (f"{name} is up to date{how}: {plural(len(result.files), 'file')}, "
                f"{human_size(result.total_bytes)}, nothing transferred")
    speed = result.downloaded_bytes / result.seconds if result.seconds else 0
    return (f"pulled {name}: {result.downloaded_files} of {plural(len(result.files), 'file')}, "
            f"{human_size(result.downloaded_bytes)} in {result.seconds:.1f}s "
            f"({human_size(int(speed))}/s); {human_size(result.total_bytes)} in cache")
