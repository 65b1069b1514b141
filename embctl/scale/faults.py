"""A failed Ray job as the one line the user reads.

Ray hands the driver its own exceptions around the one that failed the job (a task's error,
an actor that died, Ray Data's wrapper of both).  The embctl error inside (a bad line naming
its file, a worker that could not get its model naming its node) is what the user needs; a
failure of Ray itself is reported by its first line.
"""

from __future__ import annotations

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
    text = str(exc).strip().splitlines()
    return EmbctlError(f"the Ray job failed: {text[0] if text else type(exc).__name__}")


def _own_line(lines: list[str]) -> str:
    """A RayTaskError-as-EmbctlError's str is a traceback ending in the message."""
    found = _message_in("\n".join(lines))
    return found or lines[-1].strip() if len(lines) > 1 else lines[0].strip()
