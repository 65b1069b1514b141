"""`Embctl` runs embctl in a test home; `one_line_error` checks the shape of its errors.

Each home is a fresh directory: ``HF_HOME=<home>/hf``, ``EMBCTL_HOME=<home>/embctl``, and
``HF_ENDPOINT`` pointing at a local server (no test reaches the network).

Two tiers (docs/testing.md):

- ``run(ARGS)`` (or calling the runner) runs the CLI in this process
  (`support.inprocess.run`), with the home's environment and its own stdin/stdout/stderr:
  most tests;
- ``process(ARGS)`` and ``popen(ARGS)`` start ``python -m embctl``, for what needs a process
  boundary (signals, exit codes, real file descriptors, heavy imports, whole journeys).  Only
  tests marked ``e2e`` may: anywhere else they fail (`require_e2e`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Modules `embctl --help`, `ls`, `du`, `rm` must never import.
HEAVY_MODULES = ("torch", "transformers", "sentence_transformers", "openai", "PIL",
                 "onnxruntime", "ray")
#: An endpoint where nothing listens, for runs that must not need a Hub.
NO_HUB = "http://127.0.0.1:9"


def base_env(home: Path, hub_url: str) -> dict[str, str]:
    """The environment of a run in ``home`` against the Hub at ``hub_url``, without the
    caller's HF_/EMBCTL_/OPENAI_ settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "SENTENCE_TRANSFORMERS", "EMBCTL_", "OPENAI_"))
    }
    env.update(
        HF_ENDPOINT=hub_url,
        HF_HOME=str(home / "hf"),
        EMBCTL_HOME=str(home / "embctl"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_ETAG_TIMEOUT="5",
        HF_HUB_DOWNLOAD_TIMEOUT="5",
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    return env


#: Set by the autouse fixture in conftest.py: whether the running test is marked ``e2e``.
#: Outside pytest (the benchmarks under bench/ use these helpers) nothing is guarded.
E2E = {"allowed": "pytest" not in sys.modules, "test": ""}


def require_e2e() -> None:
    """Starting ``python -m embctl`` is for the e2e tier: fail any other test that tries."""
    assert E2E["allowed"], (f"{E2E['test']}: starts `python -m embctl`; mark it "
                            "@pytest.mark.e2e or run the CLI in-process (Embctl.run)")


def embctl_argv(*args: str) -> list[str]:
    """The command line of ``python -m embctl ARGS`` (``e2e`` tests only)."""
    require_e2e()
    return [sys.executable, "-m", "embctl", *args]


@dataclass
class Embctl:
    """Runs embctl with a test environment: in this process, or as ``python -m embctl``."""

    env: dict[str, str]
    home: Path

    @classmethod
    def at(cls, home: Path, hub_url: str = NO_HUB, **env: str) -> Embctl:
        """A runner with its home in ``home``, against the Hub at ``hub_url``, plus ``env``."""
        return cls({**base_env(home, hub_url), **env}, home)

    @property
    def cache(self) -> Path:
        return Path(self.env["HF_HOME"]) / "hub"

    @property
    def repo_dir(self) -> Path:
        return self.cache / "models--sentence-transformers--all-MiniLM-L6-v2"

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        env: dict | None = None,
        timeout: float = 300,
        check: bool | None = None,
    ) -> subprocess.CompletedProcess:
        """``embctl ARGS`` in this process; ``timeout`` is kept for the signature only (an
        in-process run cannot be killed: a hang shows in pytest's own output)."""
        from support.inprocess import run

        proc = run(args, {**self.env, **(env or {})}, input, text=not isinstance(input, bytes))
        return _checked(proc, args, check)

    run = __call__

    def process(
        self,
        *args: str,
        input: str | bytes | None = None,
        env: dict | None = None,
        timeout: float = 300,
        check: bool | None = None,
    ) -> subprocess.CompletedProcess:
        """``python -m embctl ARGS`` as a subprocess (``e2e`` tests only)."""
        proc = subprocess.run(embctl_argv(*args), input=input, env={**self.env, **(env or {})},
                              capture_output=True, text=not isinstance(input, bytes),
                              timeout=timeout,
                              stdin=subprocess.DEVNULL if input is None else None)
        return _checked(proc, args, check)

    def popen(self, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
        """``python -m embctl ARGS`` started, pipes on stdout and stderr (``e2e`` only)."""
        return subprocess.Popen(embctl_argv(*args), env={**self.env, **(env or {})},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)


def _checked(proc: subprocess.CompletedProcess, args: tuple[str, ...],
             check: bool | None) -> subprocess.CompletedProcess:
    if check:
        assert proc.returncode == 0, f"embctl {' '.join(args)} failed:\n{proc.stderr}"
    return proc


def copy_home(src: Path, dst: Path) -> Path:
    """A private copy of a test home: model blobs hard-linked (the product replaces a blob
    only by rename, never writes into one), everything else copied (see `support.homes`)."""
    from support.homes import link_home

    return link_home(src, dst)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error output must be one line (plus optional warnings) and hold no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("embctl: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


_PROBE = """
import sys, runpy
heavy, sys.argv = set(sys.argv[1].split(",")), ["embctl", *sys.argv[2:]]
try:
    runpy.run_module("embctl", run_name="__main__")
except SystemExit:
    pass
print("HEAVY:" + ",".join(sorted(m for m in sys.modules if m.split(".")[0] in heavy)),
      file=sys.stderr)
"""


def heavy_imports(env: dict[str, str], *args: str,
                  heavy: tuple[str, ...] = HEAVY_MODULES) -> tuple[list[str], str]:
    """Run ``embctl ARGS`` in-process of a fresh interpreter; return the ``heavy`` modules it
    imported and its stderr."""
    require_e2e()
    proc = subprocess.run([sys.executable, "-c", _PROBE, ",".join(heavy), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    lines = [x for x in proc.stderr.splitlines() if x.startswith("HEAVY:")]
    assert len(lines) == 1, proc.stderr
    return [m for m in lines[0].removeprefix("HEAVY:").split(",") if m], proc.stderr
