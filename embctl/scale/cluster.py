"""Ray for ``embctl embed --engine ray``: a local one started (and stopped) for the run, or a
running cluster joined at ``--address``; quietly (Ray's own logs stay in its session folder,
and its progress bars off: stdout carries results only, stderr embctl's lines)."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from embctl.errors import EmbctlError


@dataclass
class Cluster:
    started: bool  # a local Ray this run started (and stops)
    seconds: float  # how long start-up (or connecting) took
    cpus: int  # CPUs the cluster has
    nodes: int

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def connect(address: str | None, num_cpus: int | None = None) -> Cluster:
    """Start a local Ray with ``num_cpus`` (default: this machine's), or join ``address``."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # The core's C++ log lines on stderr (their files in the session folder keep them all).
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    start = time.monotonic()
    import ray

    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    options = {"log_to_driver": False, "logging_level": logging.ERROR,
               "include_dashboard": False, "configure_logging": True}
    # Ray's core installs its own handlers (a stack dump on SIGTERM): embctl's stay, so that
    # Ctrl-C and SIGTERM stop the run as they stop single-process embed (130, 143).
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _stderr_aside():
            if address:
                ray.init(address=address, runtime_env=_forwarded_env(), **options)
            else:
                cpus = num_cpus or os.cpu_count() or 1
                # Idle workers Ray keeps rather than kills after a second: by default as
                # many as CPUs, which the actors and Ray Data's own actors outnumber, so
                # every read and write task started a new Python process (measured: a
                # fifth of a core of 2, throughout a 2-worker job).
                os.environ.setdefault("RAY_num_workers_soft_limit", str(cpus + 8))
                ray.init(num_cpus=cpus, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "locally"
        raise EmbctlError(f"cannot start Ray {where}: {_first_line(exc)}") from None
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                try:
                    signal.signal(sig, handler)
                except ValueError:  # not the main thread: Ray's stay
                    pass
    _quiet_data()
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return Cluster(started=not address, seconds=time.monotonic() - start,
                   cpus=int(resources.get("CPU", 0)), nodes=nodes)


#: Settings of the driver's environment that the workers of a joined cluster get too (a
#: local Ray's inherit the whole environment): where models come from.  Caches stay each
#: node's own (HF_HOME, EMBCTL_HOME as the node was started with), and so do tokens.
FORWARDED = ("HF_ENDPOINT", "HF_HUB_OFFLINE")


def _forwarded_env() -> dict[str, dict[str, str]]:
    env = {name: os.environ[name] for name in FORWARDED if os.environ.get(name)}
    return {"env_vars": env} if env else {}


@contextmanager
def _stderr_aside() -> Iterator[None]:
    """Ray's core writes a line or two to file descriptor 2 while it starts, whatever the
    log level (e.g. that it read RAY_BACKEND_LOG_LEVEL): set aside, not shown."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with tempfile.TemporaryFile() as aside:
            os.dup2(aside.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _quiet_data() -> None:
    from ray.data import DataContext

    warnings.filterwarnings("ignore", module=r"ray(\.|$)")  # advice on Ray's own settings
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.log_internal_stack_trace_to_stdout = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RayNotes:
    """Stands in for stdout while a job runs: Ray's driver prints its cluster's events there
    (``(raylet) A worker died or was killed ...``), where the user's results belong.  Each
    becomes one line on stderr, its first sentence, once; tracebacks and failed tasks (which
    the job's error reports) are left to Ray's logs."""

    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self) -> None:
        self._buffer = ""
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._note(line)
        return len(text)

    def _note(self, line: str) -> None:
        line = self._ANSI.sub("", line).strip()
        start = re.match(r"\([^)]*\)\s*", line)  # "(raylet) ", "(pid=123) ": a message
        if start is None:
            return  # a message's next lines (a traceback): in Ray's logs
        line = line[start.end():]
        if line.startswith("Task "):  # a failed task: the job's own error says it, once
            return
        first = line.split(". ", 1)[0].rstrip(".")
        if first and first not in self._seen:
            self._seen.add(first)
            print(f"embctl: ray: {first}", file=sys.stderr, flush=True)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
