"""A failed Ray job as the one line the user reads.

Ray hands the driver its own exceptions around the one that failed the job (a task's error,
an actor that died, Ray Data's wrapper of both).  The embctl error inside (a bad line naming
its file, a worker that could not get its model naming its node) is what the user needs;
else the last line of the Python exception a worker raised, which Ray carries as text
(``ModuleNotFoundError: No module named 'embctl.scale'``: a worker that cannot import
embctl); a failure of Ray itself is reported by its first line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from embctl.errors import EmbctlError


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: causes, contexts, Ray's ``cause`` and the error of a
    failed actor's creation task."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for name in ("cause", "__cause__", "__context__", "creation_task_error"):
            inner = getattr(current, name, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
        error_msg = getattr(current, "error_msg", None)  # ActorDiedError's text
        if isinstance(error_msg, str):
            found = _message_in(error_msg)
            if found:
                yield EmbctlError(found)


#: How an embctl error looks in a formatted Ray traceback: ``embctl.<module>.<Class>: text``.
_MARKERS = ("embctl.scale.actor.WorkerError: ", "embctl.embed.records.InputError: ",
            "embctl.errors.EmbctlError: ", "embctl.errors.UsageError: ")


def _message_in(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        for marker in _MARKERS:
            if marker in line:
                return line.split(marker, 1)[1].strip()
    return None


def translate(exc: BaseException) -> BaseException:
    """The error to raise for ``exc``: the embctl error it carries (as one line), else an
    EmbctlError with the first line of Ray's message; KeyboardInterrupt as it is."""
    if isinstance(exc, KeyboardInterrupt):
        return exc
    for inner in _chain(exc):
        if isinstance(inner, EmbctlError):
            message = str(inner).strip().splitlines()
            if message:
                return EmbctlError(_own_line(message), getattr(inner, "exit_code", 1))
    found = _message_in(str(exc))
    if found:
        return EmbctlError(found)
    cause = _worker_cause(exc)
    if cause:
        if _IMPORT.search(cause):
            return EmbctlError(f"Ray's workers cannot import embctl: {cause}{_shadow_hint()}")
        return EmbctlError(f"the Ray job failed on a worker: {cause}")
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    return EmbctlError(f"the Ray job failed: {text[0] if text else type(exc).__name__}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: The last line of a Python traceback: ``ModuleNotFoundError: No module named 'x'``.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception): \S")
_IMPORT = re.compile(r"^(?:ModuleNotFoundError|ImportError): .*\bembctl")


def _worker_cause(exc: BaseException) -> str | None:
    """The last line of the exception a worker raised, from the tracebacks Ray carries as
    text (a task's error, an actor's creation task); Ray's own wrappers are passed over."""
    for inner in _chain(exc):
        for text in (getattr(inner, "traceback_str", None), getattr(inner, "error_msg", None),
                     str(inner)):
            if not isinstance(text, str):
                continue
            for line in reversed(_ANSI.sub("", text).splitlines()):
                line = line.strip()
                if _EXCEPTION_LINE.match(line) and not line.startswith("ray."):
                    return line
    return None


def _shadow_hint() -> str:
    """Ray puts the driver's working folder first on its workers' path: a folder named
    embctl there (a project of one's own) is imported in place of the package."""
    import embctl

    here = os.path.join(os.getcwd(), "embctl")
    package = os.path.dirname(os.path.realpath(embctl.__file__ or ""))
    if os.path.isdir(here) and os.path.realpath(here) != package:
        return (f" (a folder named embctl in {os.getcwd()} is imported in its place: Ray puts "
                "the working folder first on its workers' path; run from another folder)")
    return ""


def _own_line(lines: list[str]) -> str:
    """A RayTaskError-as-EmbctlError's str is a traceback ending in the message."""
    found = _message_in("\n".join(lines))
    return found or lines[-1].strip() if len(lines) > 1 else lines[0].strip()
