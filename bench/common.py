"""Helpers shared by the benchmarks: timing whole processes, medians, tables, a local hub."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Measure what users run: an installed package keeps compiled bytecode. A development shell with
# PYTHONDONTWRITEBYTECODE=1 would recompile embctl's (editable) modules on every start while the
# baselines' site-packages keep theirs, which is not a fair race.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.path.insert(0, str(ROOT / "tests"))


def bin_path(name: str) -> str:
    """A console script of the running interpreter's environment (embctl, hf)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def wall(cmd: list[str], env: dict[str, str], *, stdin=None, check: bool = True) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdin=stdin, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-2000:]}")
    return elapsed


def median_of(fn, runs: int) -> float:
    return statistics.median(fn() for _ in range(runs))


def interleaved(fns: dict[str, callable], runs: int, warmup: int = 1) -> dict[str, float]:
    """Run each contender in turn, ``runs`` rounds, and return each one's median seconds."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(fn())
    return {name: statistics.median(t) for name, t in times.items()}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "EMBCTL_", "SENTENCE_TRANSFORMERS"))}
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", **extra)
    return env


@contextmanager
def local_hub(root: Path):
    from support.hub import HubServer

    with HubServer(root) as server:
        yield server


def table(rows: list[tuple], header: tuple) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
