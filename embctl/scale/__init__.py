"""Embedding on Ray Data: the same backends, sessions and vector caches as ``embctl embed``,
spread over a Ray cluster.  ``embctl.ray`` is the public face; the work is here, one job a
module:

    actor     the callable class ``map_batches`` runs: one session (one model) per actor,
              the node's vector cache looked up first, only the misses computed
    pipeline  ``embed(ds, ref, ...)``: the ``map_batches`` call on a Dataset
    reading   JSONL files (a file, a folder or a glob, on any filesystem Ray Data reads) into
              a Dataset, bad lines handled as single-process ``embed`` handles them
    counting  the run's counters (lines read, cache hits, computed...) summed over workers
    faults    a Ray failure as the one line the user reads (which node, why)
    cluster   starting a local Ray, or joining one at ``--address``, quietly
    runner    ``embctl embed --engine ray``: all of the above, to a Parquet dataset

Nothing here imports ray at module level: ``import embctl`` never imports ray.
"""
