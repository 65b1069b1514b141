"""``embctl export``: a model as a plain directory, or a vector cache as a file."""

from __future__ import annotations

from pathlib import Path

import click

from embctl.cli.complete import complete_cached
from embctl.cli.options import cache_dir_option, json_option
from embctl.errors import UsageError


@click.command("export")
@click.argument("ref", shell_complete=complete_cached)
@click.option("--to", "to_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the model as a plain directory (symlinks resolved).")
@click.option("--vectors", is_flag=True, help="Export the model's vector cache instead.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --vectors: the file (.npy, .safetensors, .parquet, .jsonl).")
@click.option("--format", "fmt", type=click.Choice(["npy", "safetensors", "parquet", "jsonl"]),
              default=None, help="With --vectors: the format (default: from -o's extension).")
@click.option("--namespace", default=None, metavar="ID",
              help="With --vectors: which cache, when the model has several (see `embctl ls`).")
@click.option("--force", is_flag=True,
              help="Replace an earlier export at --to (never a folder holding anything else).")
@click.option("--follow-links", is_flag=True,
              help="Copy what symlinks leaving a local model folder point to (default: refuse).")
@click.option("--variant", default=None,
              help="Backends with variants (onnx: fp32, int8): the weights to export.")
@click.option("-O", "--option", "backend_options", multiple=True, metavar="KEY=VALUE",
              help="A backend's pull option (onnx: variant), repeatable.")
@cache_dir_option
@json_option
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def command(ref: str, to_dir: Path | None, vectors: bool, output: Path | None, fmt: str | None,
            namespace: str | None, force: bool, follow_links: bool, variant: str | None,
            backend_options: tuple[str, ...], cache_dir: Path | None,
            as_json: bool, quiet: bool) -> None:
    """Export model REF for another machine, or its cached vectors.

    \b
    Examples:
      embctl export all-MiniLM-L6-v2 --to ./minilm      # then, offline elsewhere:
      embctl pull all-MiniLM-L6-v2 --from ./minilm      #   into that machine's cache
      embctl export all-MiniLM-L6-v2 --vectors -o vecs.parquet
      embctl export onnx:all-MiniLM-L6-v2 --variant int8 --to ./minilm-int8
    """
    from embctl.console import human_size, info, print_json
    from embctl.registry import resolve

    backend = None if vectors else _exporting_backend(ref)
    if backend is not None:  # what the backend keeps itself (matrix:): it exports it
        return backend.export(resolve(ref), output, to_dir, fmt, as_json, quiet)
    if (to_dir is None) == (not vectors):
        raise UsageError("give either --to DIR (the model) or --vectors -o FILE (its vectors)")
    model = resolve(ref, allow_path=True)
    if vectors:
        summary = _export_vectors(model, output, fmt, namespace)
        message = (f"exported {summary['vectors']:,} vectors ({summary['dim']} dims) of "
                   f"{ref} to {summary['path']}")
    else:
        from embctl.cli.options import resolve_cache_dir
        from embctl.models.export import export_model

        if output is not None or fmt is not None:
            raise UsageError("-o and --format go with --vectors")
        options = _options(model, backend_options, variant)
        result = export_model(model, resolve_cache_dir(cache_dir), to_dir, force=force,
                              follow_links=follow_links, options=options)
        summary = result.to_json()
        message = (f"exported {ref}@{(result.revision or 'local')[:8]} to {result.path}: "
                   f"{len(result.files)} files, {human_size(result.size_bytes)}")
    if as_json:
        print_json(summary)
    elif not quiet:
        info(message)


def _options(model, pairs: tuple[str, ...], variant: str | None) -> dict | None:
    """The model's backend's pull options (``onnx``: variant), with their defaults; None for
    a backend without any (then -O and --variant are refused)."""
    from embctl.models.pull import pull_options
    from embctl.options import parse_pull_options
    from embctl.registry import get_backend

    backend = get_backend(model.backend)
    given = parse_pull_options(backend, pairs, variant)
    return pull_options(backend, given) if backend.pull_options else None


def _exporting_backend(ref: str):
    """The backend REF's prefix names, when it has its own ``export``; else None."""
    from embctl.registry import backends

    prefix, sep, _rest = ref.partition(":")
    backend = backends().get(prefix) if sep else None
    return backend if backend is not None and backend.export is not None else None


def _export_vectors(model, output: Path | None, fmt: str | None, namespace: str | None) -> dict:
    from embctl.errors import EmbctlError
    from embctl.outfile import check_output
    from embctl.vectors.export import export_vectors, format_for
    from embctl.vectors.scan import select_vectors

    if output is None:
        raise UsageError("--vectors needs -o FILE")
    fmt = format_for(str(output), fmt)
    check_output(output)  # before any work: a missing folder, a folder, a read-only file
    entries = [e for e in select_vectors(None if namespace else model, namespace)
               if e.status == "ok"]
    if not entries:
        raise EmbctlError(f"{model.ref}: no vector cache found (run `embctl embed` first)")
    if len(entries) > 1:
        listed = "; ".join(f"{e.extra['namespace'][:12]} ({_describe(e)})" for e in entries)
        raise UsageError(f"{model.ref} has {len(entries)} vector caches; pick one with "
                         f"--namespace: {listed}")
    return export_vectors(Path(entries[0].path), output, fmt)


def _describe(entry) -> str:
    params = {k: v for k, v in entry.extra.get("params", {}).items() if v not in (None, "", False)}
    rev = (entry.revision or "?")[:8]
    extra = ", ".join(f"{k}={v}" for k, v in params.items() if k != "input_kind")
    return f"@{rev}, {entry.count:,} vectors" + (f", {extra}" if extra else "")
