"""`run`: ``embctl ARGS`` in this process, as a fresh ``python -m embctl`` would run it.

A run gets what a new process gets: its own environment (``os.environ`` replaced for the run,
``PYTHONPATH`` put in front of ``sys.path`` as the interpreter does), its own stdin, stdout
and stderr (bytes underneath, UTF-8 text on top, with the interpreter's error handlers), the
default SIGTERM/SIGINT handlers, and the process-wide state embctl keeps reset
(`reset_state`).  It ends the way a process ends: the exit code from ``SystemExit``, and an
uncaught exception printed as the interpreter prints it (``Traceback ...``, exit 1), so tests
that check "no traceback" stay meaningful.

What is deliberately *not* reset is what only costs time: imported modules (torch once per
test session) and the backends' loaded models, which embctl keys by the identity of the files
they were loaded from (a hard-linked copy of a model is the same model; a damaged copy is a
new file and loads anew).

Where the process boundary is the point (signals, exit codes set by the interpreter, writing
to a real file descriptor, heavy imports), tests use `support.runner.Embctl.process` instead,
in the ``e2e`` tier.  So do checks an in-process run cannot make mean anything: what a fresh
interpreter imports (``-X importtime``, torch made unimportable through ``PYTHONPATH``: here
it is imported already), and settings a library reads once at its import (``OPENAI_LOG``).
"""

from __future__ import annotations

import importlib
import io
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

#: Module-level sets embctl keeps for "warn once per process": emptied before each run.
_ONCE_SETS = (("embctl.stores.plugged", "_FAILED"), ("embctl.stores.plugged", "_OWNER"),
              ("embctl.stores.models", "_FAILED"))


class _Kept(io.BytesIO):
    """A stream's bytes that survive its closing (``embctl ls | head`` closes stderr)."""

    def close(self) -> None:  # the text wrapper on top may close; the bytes stay readable
        self.flush()


def _ours(name: str) -> bool:
    return name == "embctl" or name.startswith(("embctl.", "embctl_"))


def _own_entries(extra: list[str], saved_path: list[str]) -> list[str]:
    """The run's ``PYTHONPATH`` entries that this process's ``sys.path`` does not hold."""
    known = {os.path.abspath(p) for p in saved_path if p}
    return [p for p in extra if os.path.abspath(p) not in known]


def _forget_modules_from(entries: list[str], before: set[str]) -> None:
    """Drop the modules a run imported (not in ``before``) from its own ``PYTHONPATH`` entries
    (a plugin a test installed in its ``site``): a fresh process has none of them, and the next
    run's ``PYTHONPATH`` may hold another module of the same name."""
    roots = tuple(os.path.join(os.path.abspath(e), "") for e in entries)
    if not roots:
        return
    for name in set(sys.modules) - before:
        where = getattr(sys.modules.get(name), "__file__", None)
        if where and os.path.abspath(where).startswith(roots):
            del sys.modules[name]
    importlib.invalidate_caches()


def reset_state() -> None:
    """Forget what an earlier run in this process computed from its environment: every
    ``functools`` cache of embctl and its plugins (the plugin manager, the registries, the
    CPU's ONNX variant...), the warn-once sets, and huggingface_hub's constants, which it
    reads from the environment once, at import."""
    for name, module in list(sys.modules.items()):
        if module is None or not _ours(name):
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear) and getattr(value, "__module__", None) == name:
                clear()
    for module_name, attr in _ONCE_SETS:
        module = sys.modules.get(module_name)
        if module is not None:
            getattr(module, attr).clear()
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        importlib.reload(constants)


def run(argv: Sequence[str], env: dict[str, str], input: str | bytes | None = None,
        *, text: bool = True) -> subprocess.CompletedProcess:
    """Run ``embctl ARGV`` in-process with exactly ``env`` as its environment; the result
    has the fields of ``subprocess.run``'s (``returncode``, ``stdout``, ``stderr``)."""
    data = input.encode() if isinstance(input, str) else (input or b"")
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    out, err = _Kept(), _Kept()
    with environment(env):
        sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict")
        sys.stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace",
                                      line_buffering=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            from embctl.cli import main

            code = _exit_code(main, list(argv))
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):  # closed by the run, or stdout already failed
                    pass
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            for sig, handler in saved_signals.items():
                signal.signal(sig, handler)
    stdout, stderr = out.getvalue(), err.getvalue()
    if text:
        return subprocess.CompletedProcess(["embctl", *argv], code,
                                           stdout.decode("utf-8", "replace"),
                                           stderr.decode("utf-8", "replace"))
    return subprocess.CompletedProcess(["embctl", *argv], code, stdout, stderr)


def _exit_code(main, argv: list[str]) -> int:
    """What the interpreter would exit with after ``main(argv)``."""
    try:
        main(argv)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 130
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught error
        traceback.print_exc()
        return 1
    return 0


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Code run as a fresh process with exactly ``env`` would run it: ``os.environ``
    replaced, ``PYTHONPATH`` in front of ``sys.path`` (the modules imported from there
    forgotten after), embctl's state and huggingface_hub's constants reset before and after.
    `run` runs the CLI in it; tests use it for the Python API (``embctl.load``) or another
    tool (``huggingface_hub.snapshot_download``) in a test home."""
    saved_env, saved_path = dict(os.environ), list(sys.path)
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    own_entries, modules_before = _own_entries(extra, saved_path), set(sys.modules)
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = extra
    try:
        reset_state()
        yield
    finally:
        sys.path[:] = saved_path
        _forget_modules_from(own_entries, modules_before)
        os.environ.clear()
        os.environ.update(saved_env)
        reset_state()
