"""``embctl embed REF --engine ray -i PATH -o DIR``: read, embed and write as one Ray Data job.

The input is checked and the output folder claimed before Ray starts (a typo costs no Ray
start-up); the Parquet files are written into a temporary folder beside DIR and renamed into
place when the job succeeds (a local DIR), so a failed or stopped job leaves no half dataset.
The counters come from the run's :mod:`embctl.scale.counting` tally; ``seconds`` is the job
alone, Ray's start-up is reported apart (:attr:`Result.startup`).
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embctl.embed.inputs import window_size
from embctl.embed.records import Options, Stats
from embctl.errors import UsageError
from embctl.scale import cluster as clusters
from embctl.scale import counting, faults, reading
from embctl.scale.pipeline import embed_batches


@dataclass
class Job:
    ref: str
    input_path: str
    output_dir: str
    load: dict[str, Any]  # as embctl.scale.pipeline.prepare returns it
    opts: Options = field(default_factory=Options)
    workers: int = 1
    address: str | None = None
    model_batch_size: int | None = None
    concurrency: int | None = None  # model calls in flight per worker (API backends)
    cache: str = "write"
    #: ``reading.expand(input_path)`` when the caller made it (embed checks -i before it
    #: loads the backend): a remote glob is listed once, not once per step.
    inputs: tuple[list[str] | str, bool] | None = None


@dataclass
class Result:
    stats: Stats
    warnings: list[str]  # the first bad lines skipped, named
    startup: float  # seconds to start (or join) Ray
    started: bool  # a local Ray was started for the run
    cpus: int
    nodes: int


def check_output(path: str) -> None:
    """A local DIR must be new (or an empty folder) in an existing folder, outside the
    caches; a remote one is left to the filesystem."""
    if "://" in path:
        return
    from embctl.guard import refuse_cache_path

    refuse_cache_path(path, "-o")
    target = Path(path)
    if target.is_dir() and any(target.iterdir()):
        raise UsageError(f"-o {path}: a folder that is not empty; name a new one")
    if target.exists() and not target.is_dir():
        raise UsageError(f"-o {path}: exists and is not a folder; --engine ray writes a "
                         "Parquet dataset (a folder)")
    if not target.absolute().parent.is_dir():
        raise UsageError(f"-o {path}: no folder {target.absolute().parent}")


def run(job: Job, *, on_start: Any = None) -> Result:
    """Run the job; ``on_start(cluster)`` is called once Ray is up."""
    check_output(job.output_dir)
    # A missing input: one line now, before Ray starts.
    inputs = job.inputs or reading.expand(job.input_path)
    cluster = clusters.connect(job.address)
    if on_start is not None:
        on_start(cluster)
    tmp = _temp_dir(job.output_dir)
    try:
        start = time.monotonic()
        tally = counting.new_tally()
        # Rows per actor call: single-process embed's window (16 model batches), which the
        # actor sorts by length before cutting it into batches: the same padding, so the
        # same work per line, as single-process.
        rows = window_size(job.opts, job.model_batch_size or 64, job.concurrency or 1)
        # One worker: blocks of one actor call each, not cut (even calls, the least
        # padding).  Several: 8 blocks per worker, cut from the read tasks' blocks; with
        # whole blocks from one file, Ray Data fed the pool one call at a time and the second
        # actor idled (measured: 2,000 lines, 2 workers, 33 s uncut, 23 s cut).  And calls of
        # 4 model batches: the workers end together (an actor finishing its last call of
        # 1,024 rows alone left a core idle for up to 12 s), and the model's padding-aware
        # cuts (Embedder.call_cost) keep small calls from padding more.
        blocks = None
        if job.workers > 1:
            blocks = 8 * job.workers
            rows = min(rows, 4 * (job.model_batch_size or 64))
        ds = reading.read(job.input_path, job.opts, rows, tally, blocks=blocks, inputs=inputs)
        share = cluster.cpus / max(job.workers, 1)
        ds = embed_batches(ds, job.ref, job.load, column=job.opts.text_field,
                           batch_size=rows, concurrency=job.workers,
                           num_cpus=min(1.0, share), threads=max(1, int(share)),
                           prefix=job.opts.prefix, model_batch_size=job.model_batch_size,
                           model_concurrency=job.concurrency, cache=job.cache,
                           store_text=job.opts.store_text, tally=tally)
        try:
            # Reads and writes take no CPU slot: the actors hold them all (the model's work).
            with redirect_stdout(clusters.RayNotes()):
                ds.write_parquet(tmp, ray_remote_args={"num_cpus": 0})
        except Exception as exc:
            raise faults.translate(exc) from None
        stats, warnings = counting.stats_of(tally)
        stats.seconds = time.monotonic() - start
        _commit(tmp, job.output_dir)
    except BaseException:
        _discard(tmp)
        raise
    finally:
        if cluster.started:
            cluster.close()
    return Result(stats, warnings, cluster.seconds, cluster.started, cluster.cpus,
                  cluster.nodes)


def _temp_dir(output: str) -> str:
    if "://" in output:
        return output
    target = Path(output).absolute()
    return str(target.with_name(f".{target.name}.{os.getpid()}.tmp"))


def _commit(tmp: str, output: str) -> None:
    if tmp == output:
        return
    os.makedirs(tmp, exist_ok=True)  # a job with no rows writes no file: an empty dataset
    if os.path.isdir(output):
        os.rmdir(output)  # empty (checked before the run)
    os.rename(tmp, output)


def _discard(tmp: str) -> None:
    if "://" not in tmp:
        shutil.rmtree(tmp, ignore_errors=True)
