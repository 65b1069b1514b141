"""Embedding on Ray Data with embctl's backends and caches (``pip install 'embctl[ray]'``).

    >>> import ray, embctl.ray
    >>> ds = ray.data.read_json("s3://bucket/docs/", lines=True)
    >>> ds = embctl.ray.embed(ds, "all-MiniLM-L6-v2", column="text", concurrency=4)
    >>> ds.write_parquet("s3://bucket/vectors/")

Each actor loads the model once (pulling it into its node's Hugging Face cache first when
missing, from ``HF_ENDPOINT``, which may be an ``embctl serve`` mirror), looks every text up in
its node's vector cache, and computes only the misses.  Importing this module does not import
ray; calling :func:`embed` needs it.  The CLI's ``embctl embed --engine ray`` runs the same
actors (see docs/scale.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["embed"]


def embed(ds: Any, ref: str, column: str = "text", *, output_column: str = "embedding",
          batch_size: int | None = None, concurrency: int | tuple[int, int] | None = None,
          num_gpus: float | None = None, **options: Any) -> Any:
    """A new ``ray.data.Dataset``: ``ds`` with ``output_column`` (a fixed-size list of
    float32) added, the vector of each row's ``column``, every other column kept.

    ``batch_size``: rows per actor call (default 1024); ``concurrency``: actors (an int, or
    Ray's ``(min, max)``; default 1); ``num_gpus``: GPUs per actor.  ``options``: the
    backend's own (``device``, ``normalize``, ``truncate_dim``...; ``embctl plugins`` lists
    them), plus ``prefix`` (prepended to every text), ``num_cpus`` (CPUs per actor, which
    also sizes its thread pool), ``cache=False`` (no vector cache) and ``store_text``.
    Reference and options are checked here, on the driver (:class:`embctl.errors.UsageError`).
    """
    from embctl.scale.pipeline import embed as run

    return run(ds, ref, column, output_column=output_column, batch_size=batch_size,
               concurrency=concurrency, num_gpus=num_gpus, **options)
