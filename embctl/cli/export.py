"""``embctl export``: a model as a plain directory, or a vector cache as a file."""

from __future__ import annotations

from pathlib import Path

import click

from embctl.cli.backend_flags import PullFlagsCommand
from embctl.cli.complete import complete_cached
from embctl.cli.options import cache_dir_option, json_option
from embctl.errors import UsageError


@click.command("export", cls=PullFlagsCommand)
@click.argument("ref", shell_complete=complete_cached)
@click.option("--to", "to_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the model as a plain directory (symlinks resolved).")
@click.option("--vectors", is_flag=True,
              help="Export the model's vector cache instead: each vector with its key (a "
                   "sha256), and its text only if `embed --store-text` stored it; to get "
                   "your records back with their vectors, use --texts.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --vectors: the file (.npy, .safetensors, .parquet, .jsonl; with "
                   "--texts: JSONL, - for stdout).")
@click.option("--format", "fmt", type=click.Choice(["npy", "safetensors", "parquet", "jsonl"]),
              default=None, help="With --vectors: the format (default: from -o's extension).")
@click.option("--namespace", default=None, metavar="ID",
              help="With --vectors: which cache, when the model has several (see `embctl ls`).")
@click.option("--prefix", default=None,
              help="With --vectors: the cache embedded with this --prefix.")
@click.option("--texts", "texts", default=None, metavar="FILE",
              help="With --vectors: write FILE's JSONL records (every field, in order) with "
                   "their cached vectors as \"embedding\"; computes nothing. Records whose "
                   "text is not cached are left out and reported: exit 1.")
@click.option("--text-field", default=None, metavar="NAME",
              help="With --texts: the field holding each text, as embed's (default: text).")
@click.option("--missing", "missing", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE",
              help="With --texts: write the records whose text is not cached to FILE "
                   "(JSONL, for `embctl embed -i FILE`).")
@click.option("--force", is_flag=True,
              help="Replace an earlier export at --to (never a folder holding anything else).")
@click.option("--follow-links", is_flag=True,
              help="Copy what symlinks leaving a local model folder point to (default: refuse).")
@click.option("-O", "--option", "backend_options", multiple=True, metavar="KEY=VALUE",
              help="A backend's pull option (onnx: variant), repeatable.")
@cache_dir_option
@json_option
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def command(ref: str, to_dir: Path | None, vectors: bool, output: Path | None, fmt: str | None,
            namespace: str | None, prefix: str | None, texts: str | None,
            text_field: str | None, missing: Path | None, force: bool, follow_links: bool,
            backend_options: tuple[str, ...], cache_dir: Path | None,
            as_json: bool, quiet: bool, **backend_flags: object) -> None:
    """Export model REF for another machine, or its cached vectors.

    A vector cache holds keys (sha256 of the text) and vectors, not your texts or ids
    (unless embedded with --store-text): --texts FILE joins them back, giving FILE's
    records with their vectors. With --texts the exit code is 0 when every text was cached,
    1 when some were not (left out; the first line numbers on stderr, all with --missing or
    --json).

    \b
    Examples:
      embctl export all-MiniLM-L6-v2 --to ./minilm      # then, offline elsewhere:
      embctl pull all-MiniLM-L6-v2 --from ./minilm      #   into that machine's cache
      embctl export all-MiniLM-L6-v2 --vectors -o vecs.parquet
      embctl export all-MiniLM-L6-v2 --vectors --texts docs.jsonl -o docs.vec.jsonl
      embctl export all-MiniLM-L6-v2 --vectors --texts docs.jsonl -o - --missing todo.jsonl
      embctl export onnx:all-MiniLM-L6-v2 --variant int8 --to ./minilm-int8
    """
    from embctl.console import human_size, info, plural, print_json
    from embctl.registry import resolve

    vectors = vectors or texts is not None  # --texts exports vectors
    backend = None if vectors else _exporting_backend(ref)
    if backend is not None:  # what the backend keeps itself (matrix:): it exports it
        return backend.export(resolve(ref), output, to_dir, fmt, as_json, quiet)
    if (to_dir is None) == (not vectors):
        raise UsageError("give either --to DIR (the model) or --vectors -o FILE (its vectors)")
    if prefix is not None and not vectors:
        raise UsageError("--prefix goes with --vectors (which cache to export)")
    _check_join_options(texts, text_field, missing, fmt, output, as_json)
    model = resolve(ref, allow_path=True)
    if texts is not None:
        return _join(model, ref, output, texts, text_field or "text", missing,
                     namespace, prefix, as_json, quiet)
    if vectors:
        summary = _export_vectors(model, output, fmt, namespace, prefix)
        message = (f"exported {plural(summary['vectors'], 'vector')} ({summary['dim']} dims) of "
                   f"{ref} to {summary['path']}")
    else:
        from embctl.cli.options import resolve_cache_dir
        from embctl.models.export import export_model

        if output is not None or fmt is not None:
            raise UsageError("-o and --format go with --vectors")
        options = _options(model, backend_options, backend_flags)
        result = export_model(model, resolve_cache_dir(cache_dir), to_dir, force=force,
                              follow_links=follow_links, options=options)
        summary = result.to_json()
        message = (f"exported {ref}@{(result.revision or 'local')[:8]} to {result.path}: "
                   f"{plural(len(result.files), 'file')}, {human_size(result.size_bytes)}")
    if as_json:
        print_json(summary)
    elif not quiet:
        info(message)


def _options(model, pairs: tuple[str, ...], flags: dict) -> dict | None:
    """The model's backend's pull options (``onnx``: variant), with their defaults; None for
    a backend without any (then -O and --variant are refused)."""
    from embctl.models.pull import pull_options
    from embctl.options import parse_pull_options
    from embctl.registry import get_backend

    backend = get_backend(model.backend)
    given = parse_pull_options(backend, pairs, flags)
    return pull_options(backend, given) if backend.pull_options else None


def _exporting_backend(ref: str):
    """The backend REF's prefix names, when it has its own ``export``; else None."""
    from embctl.registry import backends

    prefix, sep, _rest = ref.partition(":")
    backend = backends().get(prefix) if sep else None
    return backend if backend is not None and backend.overrides("export") else None


def _export_vectors(model, output: Path | None, fmt: str | None, namespace: str | None,
                    prefix: str | None) -> dict:
    from embctl.outfile import check_output
    from embctl.vectors.export import export_vectors, format_for
    from embctl.vectors.pick import pick_cache

    if output is None:
        raise UsageError("--vectors needs -o FILE")
    fmt = format_for(str(output), fmt)
    check_output(output)  # before any work: a missing folder, a folder, a read-only file
    return export_vectors(Path(pick_cache(model, namespace, prefix).path), output, fmt)


def _check_join_options(texts: str | None, text_field: str | None,
                        missing: Path | None, fmt: str | None, output: Path | None,
                        as_json: bool) -> None:
    if texts is None:
        for flag, given in (("--text-field", text_field), ("--missing", missing)):
            if given is not None:
                raise UsageError(f"{flag} goes with --texts FILE")
        return
    if fmt not in (None, "jsonl") or (output is not None and output.suffix in (
            ".npy", ".safetensors", ".parquet")):
        raise UsageError("--texts writes JSONL (FILE's records with \"embedding\"): "
                         "-o FILE.jsonl, or -o - for stdout")
    if output is None:
        raise UsageError("--texts needs -o FILE (JSONL), or -o - for stdout")
    if as_json and str(output) == "-":
        raise UsageError("--json and -o - both write to stdout; name a file with -o")
    if texts != "-" and str(output) != "-" and Path(texts).absolute() == output.absolute():
        raise UsageError(f"-o {output}: is --texts FILE itself; name another file")


def _join(model, ref: str, output: Path, texts: str, text_field: str, missing: Path | None,
          namespace: str | None, prefix: str | None, as_json: bool, quiet: bool) -> None:
    """``--vectors --texts FILE``: the join (embctl/vectors/join.py), rendered; exit 1 when
    some texts have no cached vector."""
    from embctl.console import info, plural, print_json, warn
    from embctl.outfile import check_output
    from embctl.vectors.join import join_texts
    from embctl.vectors.pick import pick_cache

    out = str(output)
    if out != "-":
        check_output(output)
    if missing is not None:
        check_output(missing, "--missing")
    entry = pick_cache(model, namespace, prefix)
    result = join_texts(Path(entry.path), texts, out, text_field=text_field, missing=missing)
    lost = result.missing_lines
    if as_json:
        print_json(result.to_json())
    elif not quiet:
        where = "stdout" if out == "-" else out
        info(f"exported {plural(result.written, 'record')} of {texts} with their vectors "
             f"({result.dim} dims) of {ref} to {where}")
        if lost:
            shown = ", ".join(str(n) for n in lost[:MISSING_SHOWN])
            more = f" and {len(lost) - MISSING_SHOWN:,} more" if len(lost) > MISSING_SHOWN \
                else ""
            then = (f"their records are in {missing}: embctl embed {ref} -i {missing}"
                    if missing is not None else "--missing FILE writes their records")
            warn(f"{len(lost):,} of {plural(result.records, 'text')} not in the cache, left "
                 f"out: line{'s' if len(lost) > 1 else ''} {shown}{more} ({then})")
    if lost:
        raise SystemExit(1)


#: Line numbers of missing texts named on stderr (all of them: --missing FILE, --json).
MISSING_SHOWN = 10
