"""The callable class Ray Data's ``map_batches`` runs, one instance per actor.

Each actor opens one embedding session (``embctl.embed.session``, the hallway the CLI and
``embctl.load`` go through): the model is loaded once, and pulled first, under the cache lock,
from ``HF_ENDPOINT`` when it is missing from the node's Hugging Face cache.  Each batch is
looked up in the node's vector cache (``EMBCTL_HOME`` on that node), only the misses reach the
model, and they are committed before the batch is handed back: what Ray has received is in
the cache, whatever happens to the job next (Ctrl-C, a killed actor).

A worker that cannot open its session fails with one line naming its node
(:class:`WorkerError`), which the driver reports as it is.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from embctl.errors import EmbctlError
from embctl.scale import counting

if TYPE_CHECKING:
    import pyarrow as pa

    from embctl.embed.session import Session


class WorkerError(EmbctlError):
    """A worker's failure, its node named: the message the user reads."""


def node_name() -> str:
    """This node as a user recognizes it: host name and IP address."""
    host = socket.gethostname()
    try:
        import ray

        return f"{host} ({ray.util.get_node_ip_address()})"
    except Exception:  # outside Ray, or no address: the host name alone
        return host


def _limit_threads(threads: int | None) -> None:
    """Size the model's thread pool to this actor's share of the node (Ray sets
    OMP_NUM_THREADS to the actor's CPU count, which may be less than it may use)."""
    if not threads:
        return
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")  # already imported: its pool is sized; set it again
    if torch is not None:
        torch.set_num_threads(threads)


class EmbedBatches:
    """``map_batches(EmbedBatches, fn_constructor_kwargs=...)``: a PyArrow batch in, the same
    batch with ``output_column`` (a fixed-size list of float32) added out."""

    def __init__(self, ref: str, column: str, output_column: str, load: dict[str, Any], *,
                 adapter: dict[str, Any] | None = None, model_batch_size: int | None = None,
                 model_concurrency: int | None = None, threads: int | None = None,
                 cache: str = "write", store_text: bool = False, tally: Any = None) -> None:
        from embctl.embed.session import open_session, select

        _limit_threads(threads)
        self.column = column
        self.output_column = output_column
        self.tally = tally
        try:
            target = select(ref, adapter)
            self.session: Session | None = open_session(
                target, {**load, "quiet": True}, cache=cache, batch_size=model_batch_size,
                store_text=store_text, concurrency=model_concurrency)
        except EmbctlError as exc:
            raise WorkerError(f"worker on node {node_name()}: {exc}") from None
        except OSError as exc:  # a cache folder it cannot create, a full disk...
            raise WorkerError(f"worker on node {node_name()}: {exc}") from None
        _limit_threads(threads)  # torch is imported now

    def __call__(self, batch: pa.Table) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        key = None  # the batch's rows, when the reader marked them (see counting.py)
        if counting.ROW_COLUMN in batch.column_names:
            key = counting.batch_key(batch.column(counting.ROW_COLUMN))
            batch = batch.drop_columns([counting.ROW_COLUMN])
        if self.column not in batch.column_names:
            raise EmbctlError(f"no column {self.column!r} to embed (the columns: "
                              f"{', '.join(batch.column_names)}); name it with column=")
        texts = batch.column(self.column).to_pylist()
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise EmbctlError(f"column {self.column!r}: a {type(text).__name__}, not a "
                                  f"string, in row {i} of a batch")
        assert self.session is not None
        vectorizer = self.session.vectorizer
        damaged = len(vectorizer.damaged)
        if texts:
            blob, hits, computed, duplicates = vectorizer.vectors(texts)
            vectorizer.flush()  # committed before Ray has the batch
        else:
            blob, hits, computed, duplicates = b"", 0, 0, 0
        dim = int(vectorizer.dim or self.session.embedder.dim)
        flat = pa.array(np.frombuffer(blob, dtype="<f4"), type=pa.float32())
        vectors = pa.FixedSizeListArray.from_arrays(flat, dim)
        names = batch.column_names
        if self.output_column in names:  # replaced, as single-process embed replaces it
            batch = batch.set_column(names.index(self.output_column), self.output_column,
                                     vectors)
        else:
            batch = batch.append_column(self.output_column, vectors)
        counting.add(self.tally, {"embedded": len(texts), "hits": hits, "computed": computed,
                                  "duplicates": duplicates,
                                  "damaged": len(vectorizer.damaged) - damaged}, key=key)
        return batch

    def __del__(self) -> None:
        session, self.session = getattr(self, "session", None), None
        if session is not None:
            try:
                session.close()
            except Exception:  # an actor going away: nothing left to tell
                pass
