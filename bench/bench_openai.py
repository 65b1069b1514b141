"""Throughput of ``embctl embed openai:...`` against a plain openai-client loop.

Both talk to the fake OpenAI server of tests/support/openai_server.py, started here in its own
process
with a fixed latency per request (20 ms by default), and embed the same N inputs (10,000 by
default, 40-400 characters each) with text-embedding-3-small (1,536 dimensions).  The server
keeps the vectors it computed (``--cache-vectors``; one untimed warm-up run fills it), because
a real API computes them on its own machines, not on the client's CPU cores:

* script:  ``client.embeddings.create(input=batch, model=...)`` once per 100 inputs in a loop,
           vectors kept in memory (the obvious hand-written way);
* embctl:  ``embctl embed openai:text-embedding-3-small --lines -o out.npy`` with a fresh
           (cold) vector cache and a new output file every run, in its default configuration
           and in variants.

Every run is a whole process (Python start, ``import openai``, the run), timed by wall clock;
the table shows the median of ``--runs`` runs and inputs/s.  Usage::

    python bench/bench_openai.py [--n 10000] [--latency-ms 20] [--runs 5] [--json out.json]
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

import common  # noqa: F401  (a fair environment for timing; see common.py)

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-not-a-real-key-000000"
MODEL = "text-embedding-3-small"

SCRIPT = """
import sys, openai
texts = open(sys.argv[1], encoding="utf-8").read().split("\\n")
client = openai.OpenAI()
vectors = []
for i in range(0, len(texts), 100):
    extra = {"dimensions": int(sys.argv[3])} if len(sys.argv) > 3 else {}
    response = client.embeddings.create(input=texts[i:i + 100], model=sys.argv[2], **extra)
    vectors.extend(d.embedding for d in response.data)
assert len(vectors) == len(texts)
"""


def make_inputs(n: int) -> list[str]:
    words = ("cache embedding vector model token batch server latency request retry "
             "python numpy sqlite namespace concurrency throughput").split()
    out = []
    for i in range(n):
        k = 6 + (i * 7919) % 60  # 6-65 words: ~40-400 characters
        out.append(f"{i}: " + " ".join(words[(i + j * j) % len(words)] for j in range(k)))
    return out


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "support.openai_server", "--latency-ms",
         str(latency_ms), "--api-key", KEY, "--cache-vectors"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT / "tests")
    line = proc.stdout.readline().strip()  # "URL http://127.0.0.1:PORT/v1"
    if not line.startswith("URL "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.split()[1]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall time of one run.  Each run writes a new output file next to its fresh cache
    (replacing the last run's 61 MB file would add the old file's deletion to the run)."""
    home = Path(env["EMBCTL_HOME"]) if "EMBCTL_HOME" in env else None
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        out = str(home / f"out-{time.monotonic_ns()}")
        cmd = [c.replace("{out}", out) if c.startswith("{out}") else c for c in cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dimensions", type=int, default=None,
                        help="Ask for shorter vectors (both sides), e.g. 256.")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    args = parser.parse_args()

    server, url = start_server(args.latency_ms)
    work = Path(tempfile.mkdtemp(prefix="bench-openai-"))
    inputs = work / "inputs.txt"
    inputs.write_text("\n".join(make_inputs(args.n)), encoding="utf-8")
    script = work / "script.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "EMBCTL_"))}
    env.update(OPENAI_BASE_URL=url, OPENAI_API_KEY=KEY, HF_HUB_OFFLINE="1")

    embctl = [sys.executable, "-m", "embctl", "embed", f"openai:{MODEL}", "--lines",
              "-i", str(inputs), "-o", "{out}.npy", "-q"]
    dims = [str(args.dimensions)] if args.dimensions else []
    if dims:
        embctl += ["--dimensions", *dims]
    variants: dict[str, list[str]] = {
        "script: create() per 100 inputs, sequential": [sys.executable, str(script),
                                                        str(inputs), MODEL, *dims],
        "embctl embed (defaults: 512/request, 4 in flight)": embctl,
        "embctl embed --concurrency 1 (batching only)": [*embctl, "--concurrency", "1"],
        "embctl embed --batch-size 100 (concurrency only)": [*embctl, "--batch-size", "100"],
        "embctl embed --concurrency 8": [*embctl, "--concurrency", "8"],
        "embctl embed --no-cache (request path alone)": [*embctl, "--no-cache"],
        "embctl embed -o out.jsonl (vectors as JSON text)": [
            c.replace("{out}.npy", "{out}.jsonl") for c in embctl],
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        # Warm-up: the server computes (and keeps) every vector.
        timed(next(iter(variants.values())), {**env, "EMBCTL_HOME": str(work / "w")})
        for run in range(args.runs):
            for name, cmd in variants.items():  # interleaved, so drift hits every variant
                home = work / f"home-{run}-{len(times[name])}-{abs(hash(name))}"
                times[name].append(timed(cmd, {**env, "EMBCTL_HOME": str(home)}))
        warm_home = work / "warm"
        timed(embctl, {**env, "EMBCTL_HOME": str(warm_home)})
        warm = [timed(embctl, {**env, "EMBCTL_HOME": str(warm_home)}) for _ in range(args.runs)]
        times["embctl embed, second run (all cache hits, 0 requests)"] = warm
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)  # ~2 GB of outputs and caches

    base = statistics.median(times[next(iter(variants))])
    rows = []
    print(f"\n{args.n:,} inputs, {MODEL} ({args.dimensions or 1536} dimensions), "
          f"{args.latency_ms:g} ms latency per request, "
          f"median of {args.runs} runs (whole process, wall clock)\n")
    print("| run | median s | inputs/s | vs script |")
    print("|---|---:|---:|---:|")
    for name, samples in times.items():
        med = statistics.median(samples)
        rows.append({"run": name, "median_s": med, "samples": samples,
                     "inputs_per_s": args.n / med, "speedup": base / med})
        print(f"| {name} | {med:.2f} | {args.n / med:,.0f} | {base / med:.1f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"n": args.n, "latency_ms": args.latency_ms,
                                               "dimensions": args.dimensions or 1536,
                                               "runs": args.runs, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
