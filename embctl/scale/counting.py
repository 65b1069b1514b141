"""The run's counters, summed over every read task and every actor of a Ray job.

A :class:`Tally` is a small Ray actor created by the driver; its handle travels to the read
tasks and the embedding actors, which add to it once per file or batch (a synchronous call,
so that the driver reading the totals at the end sees every addition).  A batch is counted
when it is done, under a key (its first and last rows' file and line, from the column
:data:`ROW_COLUMN` the reader adds and the actor drops): Ray retries the whole task of an
actor killed mid-task, batches it had already counted included, and a key counted once is
not counted again.  A file's read task is keyed by its path the same way.
"""

from __future__ import annotations

from typing import Any

from embctl.embed.records import Stats

#: Bad lines warned about one by one (the rest are counted), as single-process embed does.
MAX_WARNINGS = 20

#: The counters a Tally sums (the fields of embctl.embed.records.Stats that workers count).
FIELDS = ("read", "embedded", "hits", "computed", "duplicates", "damaged", "skipped",
          "blank")

#: The column the reader adds to every row ("FILE:LINE"), for the batch keys; the embedding
#: actor drops it, so it never reaches the output.
ROW_COLUMN = "__embctl_row__"


def row_mark(path: str, line: int) -> str:
    """The :data:`ROW_COLUMN` value of line ``line`` of file ``path``."""
    return f"{path}:{line}"


def batch_key(marks: Any) -> str | None:
    """The key of a batch from its :data:`ROW_COLUMN` (a pyarrow column): its first and last
    rows and their count, the same when Ray retries the task; None for an empty batch."""
    if not len(marks):
        return None
    return f"rows {marks[0].as_py()} {marks[len(marks) - 1].as_py()} {len(marks)}"


def file_key(path: str) -> str:
    """The key of a file's read counts."""
    return f"file {path}"


class _Tally:
    def __init__(self) -> None:
        self.counts = dict.fromkeys(FIELDS, 0)
        self.keys: set[str] = set()
        self.warnings: list[str] = []

    def add(self, counts: dict[str, int], warnings: list[str] | None = None,
            key: str | None = None) -> None:
        if key is not None:
            if key in self.keys:  # a retried task counting a batch or file again
                return
            self.keys.add(key)
        for name, value in counts.items():
            self.counts[name] += int(value)
        for text in warnings or ():
            if len(self.warnings) < MAX_WARNINGS:
                self.warnings.append(text)

    def totals(self) -> tuple[dict[str, int], list[str]]:
        return dict(self.counts), list(self.warnings)


def new_tally() -> Any:
    """A Tally actor on this node (Ray must be initialized): its handle, to hand to workers.
    It needs no CPU: it only adds numbers."""
    import ray

    return ray.remote(num_cpus=0, max_restarts=0)(_Tally).remote()


def add(tally: Any, counts: dict[str, int], warnings: list[str] | None = None,
        key: str | None = None) -> None:
    """Add ``counts`` to ``tally`` (None: nothing is counted, as in the Python API), once
    per ``key`` when one is given."""
    if tally is None:
        return
    import ray

    ray.get(tally.add.remote(counts, warnings, key))


def stats_of(tally: Any) -> tuple[Stats, list[str]]:
    """The totals as single-process embed's :class:`Stats`, and the first bad lines' warnings."""
    import ray

    counts, warnings = ray.get(tally.totals.remote())
    return Stats(**counts), warnings
