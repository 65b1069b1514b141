"""Other libraries' output kept off embctl's terminal unless ``-v`` (``EMBCTL_VERBOSE=1``).

A backend's libraries talk on stderr by default: transformers prints a load report for a
checkpoint that holds weights the model does not use ("UNEXPECTED ... can be ignored when
loading from different task/architecture"), progress bars while it loads, deprecation
warnings.  Those are not embctl's lines; they land above its progress and summary and say
nothing the user can act on.  So, unless the user asks with ``-v``, they go to a log file,
``EMBCTL_HOME/logs/libraries.log``, and progress bars are off.  A backend names its own
libraries (the core names none):

``route_logs("transformers", ...)``
    after importing them: those loggers' records go to the log (to stderr under ``-v``).
``with library_warnings(): ...``
    Python warnings raised inside: the same.
``verbose()``
    whether the user asked to see everything.
``progress_bars(enable, disable)``
    the library's bars on under ``-v``, off otherwise.

What a backend still wants the user to read (inputs truncated, say) it says itself, as one
embctl line (:func:`embctl.console.warn`).

Only the command line owns the process's stderr (:func:`cli_owns_stderr`, around a command's
run).  A program that calls ``embctl.load`` keeps its own logging: there the three calls above
change nothing, and :func:`verbose` is true (the libraries talk as the program set them up).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

VERBOSE_ENV = "EMBCTL_VERBOSE"
LOG_NAME = "libraries.log"
#: Past this size the log is moved to ``libraries.log.1`` (the one before is dropped).
MAX_LOG_BYTES = 1_000_000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


_CLI = False  # a command of embctl's CLI is running: embctl owns stderr


@contextmanager
def cli_owns_stderr() -> Iterator[None]:
    """While a CLI command runs, the libraries' output is routed (restored after, for a
    program that calls the CLI in-process)."""
    global _CLI
    before, _CLI = _CLI, True
    try:
        yield
    finally:
        _CLI = before


def verbose() -> bool:
    """Whether the libraries may talk on stderr: ``-v``, ``EMBCTL_VERBOSE=1``, or a program
    of the user's (the Python API), whose stderr and logging embctl leaves alone."""
    return not _CLI or os.getenv(VERBOSE_ENV, "") not in ("", "0")


def set_verbose() -> None:
    """``-v``: for this process and what it starts (an environment variable, so a backend
    loaded later, and a worker process, see it too)."""
    os.environ[VERBOSE_ENV] = "1"


def log_path() -> Path:
    from embctl.paths import embctl_home

    return embctl_home() / "logs" / LOG_NAME


def _to_log(text: str) -> None:
    """Append to the log; a log that cannot be written (a read-only home) loses the line:
    it is a courtesy, never a reason to fail or to talk on stderr."""
    from embctl.errors import EmbctlError

    try:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if path.stat().st_size > MAX_LOG_BYTES:
                os.replace(path, path.with_name(LOG_NAME + ".1"))
        except FileNotFoundError:
            pass
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(path, "a", encoding="utf-8", errors="replace") as f:
            f.write(f"{stamp} pid {os.getpid()} {_ANSI.sub('', text)}\n")
    except (OSError, EmbctlError):
        pass


def _emit(for_terminal: str, for_log: str) -> None:
    if verbose():
        stream = sys.stderr  # as it is now: an in-process run has its own
        if stream is not None:
            stream.write(for_terminal + "\n")
            stream.flush()
    else:
        _to_log(for_log)


@functools.cache
def _handler() -> logging.Handler:
    """The one handler of every routed logger; where a record goes is decided when it comes
    (``-v`` and EMBCTL_HOME as they are then), so routing once per process is enough.  Made
    on first use: the CLI imports this module at start, and ``logging`` costs milliseconds."""
    import logging

    class LibraryLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a library's malformed record: not ours to raise
                return
            library = record.name.split(".")[0]
            _emit(f"[{library}] {message}", f"{record.name} {record.levelname}: {message}")

    return LibraryLog()


def route_logs(*names: str) -> None:
    """The named loggers (and their children) write through embctl from now on: to the log,
    or to stderr under ``-v``; they no longer reach their own handlers or the root logger.
    Call it after importing the library, which may set up its logger when imported.
    Outside the CLI (the Python API) it leaves the loggers as the program set them."""
    if not _CLI:
        return
    import logging

    ours = _handler()
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if handler is not ours:
                logger.removeHandler(handler)
        if ours not in logger.handlers:
            logger.addHandler(ours)
        logger.propagate = False


def progress_bars(enable: Callable[[], object], disable: Callable[[], object]) -> None:
    """A library's progress bars, given its two switches: on under ``-v``, off otherwise;
    outside the CLI left as the program set them.  What the switch warns is dropped
    (huggingface_hub's "cannot enable" while its own bars are off: embctl draws downloads)."""
    if not _CLI:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (enable if verbose() else disable)()


@contextmanager
def library_warnings() -> Iterator[None]:
    """Python warnings raised inside go to the log (to stderr under ``-v``), as Python would
    print them.  Python's filters still decide which are raised at all.  Outside the CLI,
    Python shows them as it would without embctl."""
    if not _CLI:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        finally:  # what was said before a failure is kept too
            for w in caught:
                text = warnings.formatwarning(w.message, w.category, w.filename, w.lineno,
                                              w.line).rstrip()
                _emit(text, f"py.warnings {w.category.__name__}: {text}")
