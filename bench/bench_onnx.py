"""Benchmark the ``onnx:`` backend (fp32 and int8) against the ``st`` backend, side by side in one
run: whole processes, interleaved, medians.

    python bench/bench_onnx.py --runs 5 --lines 5000
    python bench/bench_onnx.py --sizes          # installed size of [onnx] vs [st] venvs (minutes)

What it measures (the goals are issue #12's):
- first vector: ``echo '{"text": "where is my refund"}' | embctl embed REF --no-cache``, the
  whole process (goal: onnx <= 0.2x st);
- cold N lines (bench_embed's corpus, a fresh vector cache each run): lines/s (goals: onnx fp32
  >= 1.0x st, int8 >= 1.2x);
- peak memory: the max RSS of the embctl process (``os.wait4``'s rusage of that child), in
  both runs (goal: <= 0.5x st);
- the mean cosine of int8 to fp32 vectors on the corpus (goal >= 0.98), and of fp32 to st;
- ``--sizes``: site-packages bytes of a fresh ``embctl[onnx]`` venv against ``embctl[st]``
  (goal <= 0.2x), and that the first holds no torch, transformers or sentence_transformers.

The model is all-MiniLM-L6-v2, served by a local test hub as ``embctl-test/minilm-noonnx``: the
real files without any ONNX file, so ``embctl pull onnx:...`` exports it (torch, then
onnxruntime's quantizer for int8) into the benchmark's own EMBCTL_HOME.  The runs are offline,
in a cache of their own; the user's caches are left alone.  Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from bench_embed import make_input

REPO = "embctl-test/minilm-noonnx"
CONTENDERS = {  # name -> (reference, extra embed arguments)
    "st": (f"st:{REPO}", ()),
    "onnx fp32": (f"onnx:{REPO}", ()),
    "onnx int8": (f"onnx:{REPO}", ("-O", "variant=int8")),
}
ONE_LINE = b'{"text": "where is my refund"}\n'


def measure(cmd: list[str], env: dict[str, str], stdin: Path) -> tuple[float, int]:
    """(wall seconds, max RSS bytes) of one whole process; fails loudly on a non-zero exit."""
    with open(stdin, "rb") as fin, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=fin, stdout=subprocess.DEVNULL, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd[2:6])} failed:\n{err.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss * 1024  # kilobytes on Linux


def run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed:\n{proc.stderr[-3000:]}")


def setup(work: Path, names: list[str]) -> dict[str, str]:
    """A hub serving the no-ONNX repo, a cache where st and onnx (fp32, int8) are pulled; the
    environment of the timed runs (offline)."""
    from support.hub import HubServer
    from support.onnx_export_fixtures import build_minilm_noonnx_repo

    build_minilm_noonnx_repo(work / "hub")
    paths = [str(common.ROOT), str(common.ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]
    env = common.clean_env(HF_HOME=str(work / "hf"), EMBCTL_HOME=str(work / "home"),
                           TOKENIZERS_PARALLELISM="false",
                           PYTHONPATH=os.pathsep.join(p for p in paths if p))
    embctl = [sys.executable, "-m", "embctl"]
    with HubServer(work / "hub") as hub:
        pull_env = {**env, "HF_ENDPOINT": hub.url}
        run([*embctl, "pull", f"st:{REPO}", "-q"], pull_env)
        # The repo has no ONNX file: these pulls export it (torch), then quantize (int8).
        if "onnx fp32" in names:
            run([*embctl, "pull", f"onnx:{REPO}", "-q"], pull_env)
        if "onnx int8" in names:
            run([*embctl, "pull", f"onnx:{REPO}", "--variant", "int8", "-q"], pull_env)
    return {**env, "HF_HUB_OFFLINE": "1"}


def fresh_home(base: Path, target: Path) -> Path:
    """A new EMBCTL_HOME holding the base's ONNX exports (hard links) and no vector cache."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    exports = base / "onnx-exports"
    if exports.is_dir():
        shutil.copytree(exports, target / "onnx-exports", copy_function=os.link)
    return target


def cosines(a: Path, b: Path) -> list[float]:
    import numpy as np

    def vectors(path: Path) -> dict:
        rows = (json.loads(line) for line in path.open(encoding="utf-8"))
        return {r["id"]: np.asarray(r["embedding"], dtype=np.float64) for r in rows}

    va, vb = vectors(a), vectors(b)
    out = []
    for key, x in va.items():
        y = vb[key]
        out.append(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))))
    return out


def bench(args: argparse.Namespace, work: Path) -> dict:
    names = [n for n in CONTENDERS if n.split()[0] in args.only]
    env = setup(work, names)
    base = Path(env["EMBCTL_HOME"])
    one = work / "one.jsonl"
    one.write_bytes(ONE_LINE)
    corpus = work / "in.jsonl"
    make_input(corpus, args.lines)
    embctl = [sys.executable, "-m", "embctl", "embed"]
    chosen = {name: CONTENDERS[name] for name in names}
    first: dict[str, list[tuple[float, int]]] = {name: [] for name in chosen}
    cold: dict[str, list[tuple[float, int]]] = {name: [] for name in chosen}
    for ref, extra in chosen.values():  # warm-up: page cache, bytecode
        measure([*embctl, ref, *extra, "--no-cache", "-q"], env, one)
    for i in range(args.runs):
        for name, (ref, extra) in chosen.items():
            first[name].append(measure([*embctl, ref, *extra, "--no-cache", "-q"], env, one))
        for name, (ref, extra) in chosen.items():
            home = fresh_home(base, work / "runs" / f"{name.replace(' ', '-')}-{i}")
            out = work / f"out-{name.replace(' ', '-')}.jsonl"
            cmd = [*embctl, ref, *extra, "-i", str(corpus), "-o", str(out), "-q"]
            cold[name].append(measure(cmd, {**env, "EMBCTL_HOME": str(home)}, one))
            shutil.rmtree(home, ignore_errors=True)
    out = {n: work / f"out-{n.replace(' ', '-')}.jsonl" for n in chosen}
    both = {"onnx int8", "onnx fp32"} <= set(chosen)
    return {
        "lines": args.lines, "runs": args.runs,
        "first": {n: [list(r) for r in v] for n, v in first.items()},
        "cold": {n: [list(r) for r in v] for n, v in cold.items()},
        "cos_int8_fp32": statistics.fmean(cosines(out["onnx int8"], out["onnx fp32"]))
        if both else None,
        "cos_fp32_st_min": min(cosines(out["onnx fp32"], out["st"]))
        if {"onnx fp32", "st"} <= set(chosen) else None,
    }


def med(rows: list[list[float]], i: int) -> float:
    return statistics.median(r[i] for r in rows)


def report(result: dict) -> str:
    first, cold, n = result["first"], result["cold"], result["lines"]
    names = [name for name in CONTENDERS if first.get(name)]

    def mb(x: float) -> str:
        return f"{x / 1e6:,.0f} MB"

    def row(label: str, values: dict[str, float], fmt, goal: str) -> tuple:
        cells = [fmt(values[k]) if k in values else "-" for k in CONTENDERS]
        ratios = [f"{values[k] / values['st']:.2f}x" if k in values and "st" in values
                  else "-" for k in ("onnx fp32", "onnx int8")]
        return (label, *cells, *ratios, goal)

    rows = [
        row("first vector, whole process", {k: med(first[k], 0) for k in names},
            lambda x: f"{x:.2f} s", "<= 0.2x"),
        row(f"cold {n:,} lines (lines/s)", {k: n / med(cold[k], 0) for k in names},
            lambda x: f"{x:,.0f}", ">= 1.0x fp32, >= 1.2x int8"),
        row("peak RSS, first vector", {k: med(first[k], 1) for k in names}, mb, "<= 0.5x"),
        row(f"peak RSS, cold {n:,} lines", {k: med(cold[k], 1) for k in names}, mb,
            "<= 0.5x"),
    ]
    header = ("measure", *CONTENDERS, "fp32 / st", "int8 / st", "goal")
    lines = [common.table(rows, header), ""]
    if result.get("cos_int8_fp32") is not None:
        lines.append(f"mean cosine int8 to fp32 on the {n:,} lines: "
                     f"{result['cos_int8_fp32']:.4f} (goal >= 0.98)")
    if result.get("cos_fp32_st_min") is not None:
        lines.append(f"lowest cosine fp32 to st: {result['cos_fp32_st_min']:.5f}")
    lines.append(f"medians of {result['runs']} interleaved runs; {os.cpu_count()} CPUs")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--sizes", action="store_true",
                        help="measure the installed size of [onnx] vs [st] venvs instead")
    parser.add_argument("--only", default="st,onnx",
                        help="backends to run, comma-separated (default: st,onnx)")
    parser.add_argument("--json", action="store_true", help="also print the raw numbers")
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="embctl-bench-onnx-"))
    try:
        if args.sizes:
            from onnx_sizes import report as size_report
            from onnx_sizes import sizes

            result = sizes(common.ROOT, work)
            print(size_report(result))
        else:
            result = bench(args, work)
            print(report(result))
        if args.json:
            print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
