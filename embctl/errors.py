"""Errors meant for the user: the CLI prints their message on one line, without a traceback."""

from __future__ import annotations


class EmbctlError(Exception):
    """A failure the user can act on. ``exit_code`` 1 for failures, 2 for usage errors."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(EmbctlError):
    """The command line itself is wrong (bad reference, bad option value)."""

    exit_code = 2


class OutputClosed(Exception):
    """stdout's reader went away mid-run (``embctl embed ... | head``): not an error.  Raised
    instead of BrokenPipeError, which click would turn into exit 1, so that the run unwinds
    (committing what it computed) and exits 0 as ``embctl ls | head`` does."""
