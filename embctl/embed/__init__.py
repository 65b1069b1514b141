"""``embctl embed``'s pipeline: records in, vectors out, through the vector cache.

    open the session (session.py): reference -> backend -> embedder -> input adapter ->
        namespace -> vector cache -> Vectorizer
    read lines -> records -> windows (inputs.py) -> the adapter's prepare (adapter.py)
    -> plan each window: keys, duplicates, cache hits, misses in batches (vectorizer.py,
       batching.py) -> embed and commit each batch -> write the window in input order
       (run.py, outputs.py)

``dryrun.py`` counts what a run would send with the same planning, sending nothing.

Memory is bounded by one window (``window_records`` records or ``window_bytes`` of input),
two with concurrent embed calls (the next window is started before this one is written),
whatever the input size.  Each finished batch is queued for commit at once, on its own thread,
so a killed run loses at most the batches in flight.  A text is embedded once per run however
often it repeats: within a window as a duplicate, across windows as a cache hit (or taken from
the earlier window still in flight).

This module imports nothing: each stage is imported by whoever needs it, and numpy only by
the functions that run.
"""
