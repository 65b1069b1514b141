"""``embctl embed --engine ray``: the options checked and the run rendered (the work is in
embctl.scale.runner)."""

from __future__ import annotations

import sys

import click

from embctl.cli.backend_flags import flag_values
from embctl.cli.options import OPTION_SHORTHANDS
from embctl.errors import UsageError

#: Options of single-process embed that mean nothing to a Ray job (refused, named).
NOT_WITH_RAY = {"lines": "--lines", "fmt": "--format", "dry_run": "--dry-run",
                "max_cache_size": "--max-cache-size", "id_field": "--id-field",
                "path_field": "--path-field", "image_range": "--image-range",
                "content": "--content"}


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source != click.core.ParameterSource.DEFAULT


def embed_on_ray(ctx: click.Context, ref: str) -> None:
    from embctl.console import plural, warn
    from embctl.embed.inputs import MAX_SKIP_WARNINGS
    from embctl.embed.records import Options
    from embctl.scale.pipeline import prepare
    from embctl.scale.reading import expand
    from embctl.scale.runner import Job, check_output, run

    p = ctx.params
    refused = [flag for name, flag in NOT_WITH_RAY.items() if _given(ctx, name)]
    if refused:
        raise UsageError(f"--engine ray does not take {', '.join(refused)} (it reads JSONL "
                         "files and writes a Parquet dataset; see docs/scale.md)")
    if p["input_path"] == "-":
        raise UsageError("--engine ray reads -i PATH (a JSONL file, a folder or a glob), "
                         "not stdin")
    if p["output_path"] == "-":
        raise UsageError("--engine ray writes -o DIR (a Parquet dataset), not stdout")
    # -i and -o first: a typo is one line now, not after the backend and Ray start.
    check_output(p["output_path"])
    inputs = expand(p["input_path"])
    load = prepare(ref, dict(_pairs(ref, p["backend_options"])), prefix=p["prefix"],
                   flags=flag_values(ctx, OPTION_SHORTHANDS),
                   shared={"batch_size": p["batch_size"], "concurrency": p["concurrency"]})
    if p["cache_dir"] is not None:
        load["cache_dir"] = str(p["cache_dir"])
    opts = Options(text_field=p["text_field"], prefix=p["prefix"], on_error=p["on_error"],
                   store_text=p["store_text"])
    job = Job(ref, p["input_path"], p["output_path"], load, opts, workers=p["workers"] or 1,
              address=p["address"], model_batch_size=p["batch_size"],
              concurrency=p["concurrency"], cache="off" if p["no_cache"] else "write",
              inputs=inputs)
    quiet = p["quiet"]

    def started(cluster) -> None:
        if quiet:
            return
        cpus = plural(cluster.cpus, "CPU")
        what = (f"local Ray started ({cpus})" if cluster.started else
                f"joined Ray at {job.address} ({plural(cluster.nodes, 'node')}, {cpus})")
        workers = plural(job.workers, "worker")
        print(f"embctl: {what} in {cluster.seconds:.1f}s; {workers}", file=sys.stderr,
              flush=True)

    result = run(job, on_start=started)
    if quiet:
        return
    for line in result.warnings:
        warn(line)
    more = result.stats.skipped - min(result.stats.skipped, MAX_SKIP_WARNINGS)
    if more and len(result.warnings) >= MAX_SKIP_WARNINGS:
        warn(f"{plural(more, 'more bad line')} skipped")
    print(result.stats.summary(), file=sys.stderr, flush=True)


def _pairs(ref: str, pairs: tuple[str, ...]) -> dict:
    """``-O KEY=VALUE`` typed as the backend declares them."""
    from embctl.embed.session import select
    from embctl.options import parse_options

    return parse_options(select(ref).backend, pairs) if pairs else {}
