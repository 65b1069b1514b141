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
    n = max(1, min(workers, count))
    running = [n]
    guard = threading.Lock()
    finished = threading.Event()  # waited on, never Thread.join: a signal interrupting a
    # join in Python 3.11 marks the still-running thread as stopped (CPython gh-90882)

    def work() -> None:
        try:
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
        finally:
            with guard:
                running[0] -= 1
                if not running[0]:
                    finished.set()

    try:
        for i in range(n):
            threading.Thread(target=work, daemon=True, name=f"embctl-worker-{i}").start()
        while not finished.wait(interval):
            tick()
            if stop.is_set():
                finished.wait(grace)
                break
        tick()
    except BaseException:
        stop.set()
        finished.wait(grace)
        raise
    real = [e for e in errors if not isinstance(e, Stopped)]
    if real:
        raise real[0]
    if errors:  # stopped from outside (stop set by the caller's other code)
        raise errors[0]
