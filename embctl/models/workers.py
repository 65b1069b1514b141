"""Running downloads on worker threads while the main thread stays responsive to signals.

Python runs signal handlers (Ctrl-C's KeyboardInterrupt, embctl's SIGTERM handler) only in the
main thread.  A ``ThreadPoolExecutor`` joins its workers when its ``with`` block ends and again
at interpreter exit, so a Ctrl-C during a 20 s file waited for the file to finish.  Here the
main thread only waits in short timeouts; on a signal (or a failed item) it sets ``stop``, which
the workers check between chunks (leaving ``.incomplete`` files flushed for the next pull to
resume), gives them a moment, and goes on.  The workers are daemon threads: one stuck in a
network read longer than that moment does not hold up the exit.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """Raised inside a worker that noticed ``stop``: not an error of its own."""


def run_all(fn: Callable[[T], object], items: Iterable[T], *, workers: int,
            stop: threading.Event, tick: Callable[[], None] = lambda: None,
            interval: float = 0.2, grace: float = 0.5) -> None:
    """Call ``fn(item)`` for every item, in order, on up to ``workers`` threads.

    ``tick`` runs on the calling thread every ``interval`` seconds (progress).  The first
    exception of an item sets ``stop`` and is raised once the workers have stopped (or
    ``grace`` seconds have passed); an exception in the calling thread (KeyboardInterrupt,
    SIGTERM) does the same and is re-raised.
    """
    todo: queue.SimpleQueue[T] = queue.SimpleQueue()
    count = 0
    for item in items:
        todo.put(item)
        count += 1
    errors: list[BaseException] = []

    def work() -> None:
        while not stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                fn(item)
            except BaseException as exc:  # handed to the calling thread
                errors.append(exc)
                stop.set()
                return

    threads = [threading.Thread(target=work, daemon=True, name=f"embctl-worker-{i}")
               for i in range(max(1, min(workers, count)))]
    try:
        for t in threads:
            t.start()
        while alive := [t for t in threads if t.is_alive()]:
            alive[0].join(interval)
            tick()
            if stop.is_set():
                break
    except BaseException:
        stop.set()
        _join(threads, grace)
        raise
    _join(threads, grace)
    real = [e for e in errors if not isinstance(e, Stopped)]
    if real:
        raise real[0]
    if errors:  # stopped from outside (stop set by the caller's other code)
        raise errors[0]


def _join(threads: list[threading.Thread], grace: float) -> None:
    deadline = time.monotonic() + grace
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
