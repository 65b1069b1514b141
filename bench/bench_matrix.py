"""Benchmarks for the matrix backend, against a local Hub server (tests/support/hub/).

    /work/venv/bin/python bench/bench_matrix.py [--runs 3] [--hidden 2048] [--texts 5000]

1. Bytes downloaded: ``embctl pull matrix:bench/llm`` on a three-shard bf16 checkpoint whose
   embedding sits in shard 2, against the tensor's own bytes (the seed downloads the shard).
2. Peak memory while extracting: peak RSS of the pull, minus the peak RSS of the same command
   when there is nothing to do (imports, Hub calls), against the tensor's size; and the same
   for the seed's way (download the shard, load the tensor with safetensors, save it).
3. Throughput: ``embctl embed`` of the same texts (``--no-cache``) with
   ``matrix:sentence-transformers/all-MiniLM-L6-v2`` (the model's own token matrix) and with
   ``all-MiniLM-L6-v2``: end to end (process wall time) and the pipeline's own rate.

Medians of ``--runs`` runs; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (a fair environment for timing; see common.py)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.hub import HubServer, build_minilm_repo  # noqa: E402
from support.matrix_fixtures import EMBED_NAME, build_sharded_llm, embed_shard  # noqa: E402

REPO = "bench/llm"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
sys.stderr.write(p.stderr)
print(p.returncode, peak, wall)
"""

SEED = """
import sys, json
from huggingface_hub import hf_hub_download
from safetensors import safe_open
from safetensors.torch import save_file
repo, name, out = sys.argv[1:]
index = json.load(open(hf_hub_download(repo, "model.safetensors.index.json")))
shard = hf_hub_download(repo, index["weight_map"][name])  # the whole shard
with safe_open(shard, "pt") as f:
    t = f.get_tensor(name)
save_file({"embeddings": t}, out)
"""

WORDS = ("the of and to in is was for on that with as by at from his an were are which this "
         "be has had one their its new after who they two her she first been other also into "
         "more time up over only year city made state world school because government music "
         "river people during model data language search system network learning training "
         "embedding vector cache memory shard tensor matrix token download server worker").split()


def measure(cmd: list[str], env: dict[str, str]) -> tuple[int, int, float, str]:
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], env=env, capture_output=True,
                          text=True)
    rc, peak, wall = proc.stdout.split()
    return int(rc), int(peak), float(wall), proc.stderr


def texts(n: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        k = rng.randint(5, 40)
        lines.append(" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + ".")
    return "\n".join(lines) + "\n"


def rate_from(stderr: str) -> float:
    m = re.search(r"\(([\d,]+) lines/s\)", stderr)
    return float(m.group(1).replace(",", "")) if m else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--texts", type=int, default=5000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    root = work / "hub"
    t = time.perf_counter()
    repo = build_sharded_llm(root, REPO, hidden=args.hidden, layers=2)
    build_minilm_repo(root, decoys=False)
    shard = embed_shard(repo)
    from support.matrix_fixtures import tensor_bytes

    tensor = len(tensor_bytes(shard, EMBED_NAME))
    print(f"built checkpoint in {time.perf_counter() - t:.1f}s: embedding {tensor:,} bytes, "
          f"shard {shard.stat().st_size:,} bytes", file=sys.stderr)
    rows: list[tuple[str, str, str]] = []
    with HubServer(root) as hub:
        def env(home: Path) -> dict[str, str]:
            return {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf"),
                    "EMBCTL_HOME": str(home / "embctl"), "HF_HUB_DISABLE_XET": "1"}

        # 1 + 2: bytes and memory of the pull
        sent, pull_peak, base_peak, walls = [], [], [], []
        for i in range(args.runs):
            home = work / f"pull{i}"
            hub.reset_stats()
            rc, peak, wall, err = measure([sys.executable, "-m", "embctl", "pull", "-q",
                                           f"matrix:{REPO}"], env(home))
            assert rc == 0, err
            sent.append(sum(n for (r, p), n in hub.bytes_by_path.items()
                            if r == REPO and p.endswith(".safetensors")))
            pull_peak.append(peak)
            walls.append(wall)
            rc, peak, _, err = measure([sys.executable, "-m", "embctl", "pull", "-q",
                                        f"matrix:{REPO}"], env(home))
            assert rc == 0, err
            base_peak.append(peak)
        seed_sent, seed_peak, seed_base = [], [], []
        for i in range(args.runs):
            home = work / f"seed{i}"
            hub.reset_stats()
            cmd = [sys.executable, "-c", SEED, REPO, EMBED_NAME, str(work / f"seed{i}.st")]
            rc, peak, _, err = measure(cmd, env(home))
            assert rc == 0, err
            seed_sent.append(sum(n for (r, p), n in hub.bytes_by_path.items()
                                 if r == REPO and p.endswith(".safetensors")))
            seed_peak.append(peak)
            base = [sys.executable, "-c", "import huggingface_hub, safetensors.torch, torch"]
            seed_base.append(measure(base, env(home))[1])
        med = statistics.median
        mb = 1e6
        rows.append(("Bytes downloaded from weight files", f"{med(sent):,.0f} "
                     f"({med(sent) / tensor:.4f}x the tensor)",
                     f"{med(seed_sent):,.0f} ({med(seed_sent) / tensor:.2f}x)"))
        extra = med(p - b for p, b in zip(pull_peak, base_peak, strict=True))
        seed_extra = med(p - b for p, b in zip(seed_peak, seed_base, strict=True))
        rows.append(("Peak RSS of the pull (absolute)", f"{med(pull_peak) / mb:.0f} MB",
                     f"{med(seed_peak) / mb:.0f} MB"))
        rows.append(("Peak RSS for extracting (minus same process with nothing to do)",
                     f"{extra / mb:.1f} MB ({extra / tensor:.2f}x the tensor)",
                     f"{seed_extra / mb:.0f} MB ({seed_extra / tensor:.2f}x)"))
        rows.append(("Pull wall time (local server)", f"{med(walls):.2f} s", "-"))

        # 3: throughput
        home = work / "embed"
        e = env(home)
        for ref in (f"matrix:{MINILM}", "all-MiniLM-L6-v2"):
            subprocess.run([sys.executable, "-m", "embctl", "pull", "-q", ref], env=e,
                           check=True)
        data = work / "texts.txt"
        data.write_text(texts(args.texts))
        results: dict[str, tuple[float, float]] = {}
        for ref in (f"matrix:{MINILM}", "all-MiniLM-L6-v2"):
            walls, rates = [], []
            for _ in range(args.runs):
                rc, _, wall, err = measure([sys.executable, "-m", "embctl", "embed", ref,
                                            "--lines", "--no-cache", "-i", str(data), "-o",
                                            str(work / "out.npy")], e)
                assert rc == 0, err
                walls.append(wall)
                rates.append(rate_from(err))
            results[ref] = (med(walls), med(rates))
        (mw, mr), (sw, sr) = results[f"matrix:{MINILM}"], results["all-MiniLM-L6-v2"]
        n = args.texts
        rows.append((f"embed {n:,} texts, end to end (wall)",
                     f"matrix: {mw:.2f} s ({n / mw:,.0f}/s)",
                     f"all-MiniLM-L6-v2: {sw:.2f} s ({n / sw:,.0f}/s); ratio {sw / mw:.1f}x"))
        rows.append((f"embed {n:,} texts, pipeline rate (model loaded)", f"matrix: {mr:,.0f}/s",
                     f"all-MiniLM-L6-v2: {sr:,.0f}/s; ratio {mr / sr:.0f}x"))
    print(f"\nEmbedding tensor: {EMBED_NAME} BF16 [30522, {args.hidden}] = {tensor:,} bytes, in "
          f"shard 2 of 3 ({shard.stat().st_size:,} bytes); medians of {args.runs} runs.\n")
    print("| Measure | embctl | Seed / baseline |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(json.dumps({"work": str(work)}), file=sys.stderr)


if __name__ == "__main__":
    main()
