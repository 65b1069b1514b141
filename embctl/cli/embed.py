"""``embctl embed``: JSONL (or text lines) in, vectors out, through the vector cache."""

from __future__ import annotations

import os
import sys

import click

from embctl.cli.backend_flags import BackendFlagsCommand, flag_values
from embctl.cli.complete import complete_any
from embctl.cli.options import (
    OPTION_SHORTHANDS,
    cache_dir_option,
    resolve_cache_dir,
    verbose_option,
)
from embctl.errors import UsageError

CAP_ENV = "EMBCTL_VECTOR_CACHE_MAX_SIZE"


class EmbedCommand(BackendFlagsCommand):
    """``embed`` takes the flags backends declare; ``--help`` lists them per backend and ends
    with every installed backend's own options (``-O KEY=VALUE``)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from embctl.options import format_backend_options

        super().format_epilog(ctx, formatter)
        listing = format_backend_options()
        if listing:
            with formatter.section("Backend options (-O KEY=VALUE; see `embctl plugins`)"):
                for line in listing.splitlines():  # as printed: aligned columns
                    formatter.write(" " * formatter.current_indent + line + "\n")


@click.command("embed", cls=EmbedCommand)
@click.argument("ref", shell_complete=complete_any)
@click.option("-i", "--input", "input_path", default="-", metavar="FILE|DIR|-",
              help="JSONL input (default: stdin); image backends: or a folder of images.")
@click.option("-o", "--output", "output_path", default="-", metavar="FILE|-",
              help="Output (default: stdout). .npy and .parquet pick the format.")
@click.option("--text-field", default="text", show_default=True, help="Field holding the text.")
@click.option("--id-field", default="id", show_default=True,
              help="Field holding the id (for .npy/.parquet ids and --lines output).")
@click.option("--lines", is_flag=True, help="Input is plain text, one text per line.")
@click.option("-c", "--content", multiple=True, metavar="TEXT",
              help="Embed TEXT instead of reading stdin or -i (repeatable): one JSON line each.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=None,
              help="Inputs per model call (default: the backend's preference, 64 for st).")
@click.option("--normalize/--no-normalize", default=None,
              help="L2-normalize the vectors (default: the backend's choice: off for st, "
              "on for matrix).")
@click.option("--prefix", default="", help="Prepended to every text (e.g. 'query: ').")
@click.option("--truncate-dim", type=click.IntRange(1), default=None,
              help="Keep the first N dimensions (Matryoshka models).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps... (default: cuda if "
              "available, else cpu).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the vector cache.")
@click.option("--store-text", is_flag=True, help="Keep the texts in the cache (for export).")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail",
              show_default=True, help="On a bad line: stop with its line number, or skip it.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "npy", "parquet"]), default=None,
              help="Output format (default: from -o's extension, else jsonl).")
@click.option("--max-cache-size", default=None, metavar="SIZE",
              help=f"Evict least recently used vectors beyond SIZE (e.g. 2GB); env {CAP_ENV}.")
@cache_dir_option
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="Model calls in flight at once (default: the backend's; openai: 4).")
@click.option("-O", "--option", "backend_options", multiple=True, metavar="KEY=VALUE",
              help="A backend's own option, repeatable (listed below and by `embctl plugins`).")
@click.option("--dry-run", is_flag=True,
              help="Say how many inputs would be sent (and their estimated tokens); send nothing.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary line.")
@verbose_option
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="ray: a Ray Data job, -i PATH to -o DIR (Parquet); "
              "see docs/scale.md.")
@click.option("--address", default=None, metavar="ADDR",
              help="--engine ray: the Ray cluster to join (default: start a local one).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="--engine ray: embedding actors, one model copy each (default 1).")
def command(ref: str, input_path: str, output_path: str, text_field: str, id_field: str,
            lines: bool, batch_size: int | None, normalize: bool | None, prefix: str,
            truncate_dim: int | None, device: str | None, no_cache: bool, store_text: bool,
            on_error: str, fmt: str | None, max_cache_size: str | None, cache_dir,
            concurrency: int | None = None, dry_run: bool = False, quiet: bool = False,
            backend_options: tuple[str, ...] = (), engine: str = "local",
            address: str | None = None, workers: int | None = None,
            content: tuple[str, ...] = (), **backend_flags: object) -> None:
    """Embed JSONL from stdin (or -i FILE) with model REF.

    Each output line is the input object with an "embedding" list added, in input order.
    Vectors are cached: rerunning on the same texts does not touch the model.

    \b
    Examples:
      embctl embed all-MiniLM-L6-v2 < docs.jsonl > vectors.jsonl
      embctl embed all-MiniLM-L6-v2 --lines -i titles.txt -o titles.npy
      embctl embed all-MiniLM-L6-v2 -c 'first text' -c 'second text'
      embctl embed e5-small-v2 --prefix 'query: ' --text-field q < queries.jsonl
      embctl embed openai:text-embedding-3-small --dimensions 256 --dry-run < docs.jsonl
      embctl embed openai:text-embedding-3-small -O base_url=http://localhost:8000/v1 -O timeout=5
      embctl embed onnx:all-MiniLM-L6-v2 --variant int8 < docs.jsonl   # no torch
      embctl embed all-MiniLM-L6-v2 --engine ray --workers 2 -i 'docs/*.jsonl' -o vectors/
      embctl embed all-MiniLM-L6-v2 --engine ray --address HEAD:6379 --workers 8 \\
          -i s3://bucket/docs/ -o s3://bucket/vectors/

    \b
    --device, --normalize, --truncate-dim and the backend flags listed below are shorthands
    for the backend options of those names (refused by a backend without them).
    """
    from embctl.embed.inputs import open_input
    from embctl.embed.outputs import make_writer, output_format
    from embctl.embed.records import Options
    from embctl.embed.session import open_session, select, with_adapter
    from embctl.options import load_options
    from embctl.outfile import check_output

    if engine == "ray":
        from embctl.cli.embed_ray import embed_on_ray

        embed_on_ray(click.get_current_context(), ref)
        return
    for name, value in (("--address", address), ("--workers", workers)):
        if value is not None:
            raise UsageError(f"{name} needs --engine ray")
    cap = _cap(max_cache_size)
    target = select(ref, {"prefix": prefix})
    ctx = click.get_current_context()
    load = load_options(target.backend, backend_options,
                        flags=flag_values(ctx, OPTION_SHORTHANDS),
                        shared={"batch_size": batch_size, "concurrency": concurrency})
    target = with_adapter(target, {"prefix": prefix, **load})  # an adapter reads its options
    fmt = output_format(output_path, fmt)
    if output_path != "-":  # before the model is loaded (or pulled): a missing folder...
        check_output(output_path)
    if cache_dir is not None:
        resolve_cache_dir(cache_dir)  # a file where the folder should be: one line, now
    opts = Options(text_field=text_field, id_field=id_field, lines=lines,
                   batch_size=batch_size, prefix=prefix, on_error=on_error,
                   store_text=store_text, concurrency=concurrency)
    stream = open_input(target.adapter, input_path, opts, content)
    session = None
    try:
        session = open_session(
            target, {**load, "quiet": quiet, "cache_dir": cache_dir},
            cache="off" if no_cache else "read" if dry_run else "write",
            batch_size=batch_size, store_text=store_text, concurrency=concurrency)
        if dry_run:
            from embctl.embed.dryrun import dry_run as plan_run

            plan = plan_run(session.vectorizer, stream, opts)
            print(plan.summary(), file=sys.stderr, flush=True)
            return
        from embctl.embed.run import run, start_progress

        stats = run(session.vectorizer, stream,
                    lambda dim_hint: make_writer(output_path, fmt, opts, dim_hint), opts,
                    progress=start_progress(stream, quiet=quiet, to_stdout=output_path == "-"))
    finally:
        if session is not None:
            session.close()  # the model's hold released when the command ends, not at exit
        if stream is not sys.stdin.buffer:
            stream.close()
    if cap is not None and not no_cache:
        _evict(cap, quiet)
    if not quiet:
        print(stats.summary(), file=sys.stderr, flush=True)


def _cap(option: str | None) -> int | None:
    from embctl.console import parse_size

    text = option or os.getenv(CAP_ENV)
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"--max-cache-size: {exc}") from None


def _evict(cap: int, quiet: bool) -> None:
    import sqlite3

    from embctl.console import human_size, plural, warn
    from embctl.vectors.evict import enforce_cap

    try:
        evicted, freed = enforce_cap(cap)
    except (sqlite3.Error, OSError) as exc:
        warn(f"could not apply the cache size cap: {exc}")
        return
    if evicted and not quiet:
        print(f"embctl: evicted {plural(evicted, 'least recently used vector')} "
              f"(~{human_size(freed)})",
              file=sys.stderr)
