"""``embctl.ray.embed``: a Dataset's text column embedded by a pool of embedding actors."""

from __future__ import annotations

from typing import Any

#: Model batches per actor call when no batch_size is given, as in single-process embed's
#: windows (embctl.embed.inputs.window_size): the actor sorts a call's texts by length
#: before cutting them into batches, and the larger the call the less padding (on short
#: texts of mixed lengths, calls of 512 rows pad to a fifth more tokens than calls of 1,024).
BATCHES_PER_CALL = 16


def prepare(ref: str, options: dict[str, Any], *, prefix: str = "",
            flags: dict[str, Any] | None = None,
            shared: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check ``ref`` and the backend options on the driver, before any actor starts (a typo
    is one line now, not one per actor later); -> what ``Backend.load`` gets."""
    from embctl.embed.session import select
    from embctl.options import load_options

    target = select(ref, {"prefix": prefix})
    if target.adapter.kind != "text":
        from embctl.errors import UsageError

        raise UsageError(f"{ref}: the Ray engine embeds text columns; this backend reads "
                         f"{target.adapter.kind} inputs")
    return load_options(target.backend, given=options, flags=flags, shared=shared)


def embed_batches(ds: Any, ref: str, load: dict[str, Any], *, column: str = "text",
                  output_column: str = "embedding", batch_size: int | None = None,
                  concurrency: int | tuple[int, int] | None = None,
                  num_gpus: float | None = None, num_cpus: float | None = None,
                  threads: int | None = None, prefix: str = "",
                  model_batch_size: int | None = None,
                  model_concurrency: int | None = None, cache: str = "write",
                  store_text: bool = False, tally: Any = None) -> Any:
    """``ds.map_batches`` with :class:`embctl.scale.actor.EmbedBatches` (``load``: as
    :func:`prepare` returns it)."""
    from embctl.scale.actor import EmbedBatches

    rows = batch_size or BATCHES_PER_CALL * (model_batch_size or 64)
    kwargs = {"ref": ref, "column": column, "output_column": output_column, "load": load,
              "adapter": {"prefix": prefix}, "model_batch_size": model_batch_size,
              "model_concurrency": model_concurrency,
              "threads": threads if threads is not None else _threads(num_cpus),
              "cache": cache, "store_text": store_text, "tally": tally}
    import ray

    # Ray Data restarts a killed actor and retries its batch (max_restarts and
    # max_task_retries default to -1 for actor pools); an actor whose constructor raises is
    # not restarted: that is the job's error.
    remote: dict[str, Any] = {}
    if num_gpus:
        remote["num_gpus"] = num_gpus
    if num_cpus is not None:
        remote["num_cpus"] = num_cpus
    if isinstance(concurrency, tuple):
        pool = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    else:
        pool = ray.data.ActorPoolStrategy(size=concurrency or 1)
    return ds.map_batches(EmbedBatches, fn_constructor_kwargs=kwargs, batch_size=rows,
                          batch_format="pyarrow", compute=pool, zero_copy_batch=True,
                          **remote)


def _threads(num_cpus: float | None) -> int | None:
    return max(1, int(num_cpus)) if num_cpus else None


def embed(ds: Any, ref: str, column: str = "text", *, output_column: str = "embedding",
          batch_size: int | None = None, concurrency: int | tuple[int, int] | None = None,
          num_gpus: float | None = None, num_cpus: float | None = None, prefix: str = "",
          cache: bool = True, store_text: bool = False, **options: Any) -> Any:
    """See :func:`embctl.ray.embed`."""
    load = prepare(ref, options, prefix=prefix)
    return embed_batches(ds, ref, load, column=column, output_column=output_column,
                         batch_size=batch_size, concurrency=concurrency, num_gpus=num_gpus,
                         num_cpus=num_cpus, prefix=prefix, cache="write" if cache else "off",
                         store_text=store_text)
