"""The ``embctl`` command group.

Each command lives in its own module and is imported only when it runs (or when ``--help``
lists it), so ``embctl --help`` stays fast.  Command modules only parse arguments and render;
the work is done by ``embctl.models``, ``embctl.vectors`` and ``embctl.embed``.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import signal
import sys

import click

from embctl import __version__
from embctl.cli import oserrors
from embctl.cli.options import verbose_option
from embctl.errors import EmbctlError, OutputClosed

NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2

COMMANDS = {
    "pull": "Download a model into the cache (or import one with --from).",
    "ls": "List cached models, vector caches and matrices.",
    "du": "Show disk usage by category.",
    "rm": "Remove models or vector caches from the cache.",
    "verify": "Check cached files against their hashes; --repair re-downloads bad ones.",
    "embed": "Embed JSONL or text lines from stdin or a file, with a vector cache.",
    "export": "Export a model directory or cached vectors.",
    "serve": "Serve the cache: a Hub mirror and an OpenAI-compatible embeddings API.",
    "plugins": "List installed plugins, their backends and aliases.",
    "completion": "Print the shell completion script for bash, zsh or fish.",
}


class LazyGroup(click.Group):
    """A group whose commands are imported from ``embctl.cli.<name>`` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        try:
            module = importlib.import_module(f"embctl.cli.{cmd_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"embctl.cli.{cmd_name}":
                return None
            raise
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help comes from COMMANDS, so `embctl --help` imports no command module.
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  embctl pull all-MiniLM-L6-v2            # in a Dockerfile: no network needed at run time
  embctl ls --sort size                   # what is taking space
  embctl rm BAAI/bge-small-en-v1.5 -y     # and reclaim it
  embctl verify                           # catch corrupted downloads
  cat docs.jsonl | embctl embed all-MiniLM-L6-v2 > vectors.jsonl

Models live in the Hugging Face cache (HF_HOME, HF_HUB_CACHE, SENTENCE_TRANSFORMERS_HOME);
embctl's own files under EMBCTL_HOME.""",
)
@click.version_option(__version__, "-V", "--version", prog_name="embctl")
@verbose_option
def cli() -> None:
    """Manage a local cache of embedding models and the embeddings computed with them."""


def main(argv: list[str] | None = None) -> None:
    # At exit, what is alive dies with the process: keep the interpreter's last garbage
    # collections from walking it (0.1 s once openai or torch is loaded).  An atexit hook, so
    # a program that calls main() and goes on is not affected; registered first, it runs last.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    _main(argv)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, ``timeout``, a supervisor): unwound like Ctrl-C, so requests
    in flight finish and what was paid for is committed before the process exits."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends the process at once
    raise Terminated()


def _stopped(exc: KeyboardInterrupt) -> None:
    """Exit as a stopped run: 143 for SIGTERM, 130 for Ctrl-C (128 + the signal)."""
    if isinstance(exc, Terminated):
        print("embctl: terminated", file=sys.stderr)
        sys.exit(143)
    print("embctl: interrupted", file=sys.stderr)
    sys.exit(130)


def _main(argv: list[str] | None) -> None:
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (embctl called from a thread): leave it
        pass
    oserrors.name_stdout()  # its write errors say "stdout"
    from embctl.quiet import cli_owns_stderr

    try:
        with cli_owns_stderr():  # the libraries' output routed (embctl.quiet)
            rc = cli.main(args=argv, prog_name="embctl", standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt into Abort
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):
            _stopped(cause)
        print("embctl: aborted", file=sys.stderr)
        sys.exit(1)
    except click.ClickException as exc:
        if isinstance(exc, NO_ARGS_IS_HELP):  # `embctl` alone: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        print(f"embctl: error: {_one_line(exc)}", file=sys.stderr)
        oserrors.drop_stdout()
        sys.exit(exc.exit_code)
    except EmbctlError as exc:
        print(f"embctl: error: {exc}", file=sys.stderr)
        oserrors.drop_stdout()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _stopped(exc)
    except (BrokenPipeError, OutputClosed):
        _broken_pipe()
    except OSError as exc:  # a full disk, a read-only folder, stdout on /dev/full...
        if exc.errno not in oserrors.USER_ERRNOS:
            raise  # not the user's disk or files: a bug, keep its traceback
        print(f"embctl: error: {oserrors.describe(exc)}", file=sys.stderr)
        oserrors.drop_stdout()
        sys.exit(1)
    try:  # what is still buffered: a full disk is reported here, not by the interpreter's exit
        oserrors.flush_stdout()
    except BrokenPipeError:
        _broken_pipe()
    except OSError as exc:
        print(f"embctl: error: {oserrors.describe(exc)}", file=sys.stderr)
        oserrors.drop_stdout()
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


def _one_line(exc: click.ClickException) -> str:
    """click's error as one line, like embctl's own (its usage block is left to --help)."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


def _broken_pipe() -> None:
    # `embctl ls | head`: the reader went away; that is not an error.
    sys.stderr.close()
    sys.exit(0)
