"""Benchmarks for the foundation issue: ls/du against `hf cache ls`, verify against sha256sum,
pull against `hf download`, each side by side in one run, medians of repeated runs.

    python bench/bench_cache.py [--runs 7] [--out docs/benchmarks-cache.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import bin_path, clean_env, interleaved, local_hub, table, wall

MODELS = 20
NEEDED = ["1_Pooling/config.json", "README.md", "config.json", "config_sentence_transformers.json",
          "data_config.json", "model.safetensors", "modules.json", "sentence_bert_config.json",
          "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]


def build_cache(work: Path, server_url: str) -> dict[str, str]:
    """Pull all-MiniLM-L6-v2 once, then make 19 more repos out of it with distinct blobs."""
    home = work / "home"
    env = clean_env(HF_ENDPOINT=server_url, HF_HOME=str(home / "hf"),
                    EMBCTL_HOME=str(home / "embctl"))
    subprocess.run([bin_path("embctl"), "pull", "all-MiniLM-L6-v2", "-q"], env=env, check=True)
    cache = home / "hf" / "hub"
    src = cache / "models--sentence-transformers--all-MiniLM-L6-v2"
    for i in range(1, MODELS):
        # Real copies (not links): verify and sha256sum must each read every byte.
        shutil.copytree(src, cache / f"models--bench--model-{i:02d}", symlinks=True)
    return env


def blob_paths(env: dict[str, str]) -> list[str]:
    cache = Path(env["HF_HOME"]) / "hub"
    return sorted(str(p) for p in cache.glob("models--*/blobs/*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    embctl, hf = bin_path("embctl"), bin_path("hf")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from support.hub import build_minilm_repo

        build_minilm_repo(work / "hub")
        with local_hub(work / "hub") as server:
            env = build_cache(work, server.url)

            # ls / du against hf cache ls, whole-process wall time.
            t = interleaved({
                "embctl ls": lambda: wall([embctl, "ls"], env),
                "embctl du": lambda: wall([embctl, "du"], env),
                "hf cache ls": lambda: wall([hf, "cache", "ls"], env),
            }, args.runs)
            for name in ("embctl ls", "embctl du"):
                rows.append((f"{name} vs hf cache ls ({MODELS} models)",
                             f"{t[name] * 1000:.0f} ms", f"{t['hf cache ls'] * 1000:.0f} ms",
                             f"{t[name] / t['hf cache ls']:.2f}x time", "<= 0.35x"))

            # verify against sha256sum file after file, over the same blobs.
            blobs = blob_paths(env)
            size = sum(os.path.getsize(b) for b in blobs)
            t = interleaved({
                "verify": lambda: wall([embctl, "verify", "-q"], env),
                "sha256sum": lambda: sum(wall(["sha256sum", b], env) for b in blobs),
            }, max(3, args.runs // 2))
            rows.append((f"embctl verify vs sha256sum, {len(blobs)} blobs, {size / 1e9:.2f} GB",
                         f"{t['verify']:.2f} s", f"{t['sha256sum']:.2f} s",
                         f"{t['sha256sum'] / t['verify']:.2f}x faster", ">= 1.5x"))

            # One large file: a 1 GB safetensors blob in a repo of its own.
            big = work / "hub" / "bench" / "big-model"
            big.mkdir(parents=True)
            with open(big / "model.safetensors", "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(1024):
                    f.write(block)
            (big / "config.json").write_text("{}")
            subprocess.run([embctl, "pull", "bench/big-model", "-q"], env=env, check=True)
            big_blob = next(Path(env["HF_HOME"], "hub", "models--bench--big-model", "blobs")
                            .glob("*" * 1))
            big_blob = max(big_blob.parent.iterdir(), key=lambda p: p.stat().st_size)
            t = interleaved({
                "verify": lambda: wall([embctl, "verify", "bench/big-model", "-q"], env),
                "sha256sum": lambda: wall(["sha256sum", str(big_blob)], env),
            }, max(3, args.runs // 2))
            rows.append(("embctl verify vs sha256sum, one 1 GiB file",
                         f"{t['verify']:.2f} s", f"{t['sha256sum']:.2f} s",
                         f"{t['sha256sum'] / t['verify']:.2f}x speed", ">= 0.9x"))

            # pull against hf download with the same files, fresh cache each run.
            counter = iter(range(10_000))

            def fresh_env():
                n = next(counter)
                return clean_env(HF_ENDPOINT=server.url, HF_HOME=str(work / f"p{n}" / "hf"),
                                 EMBCTL_HOME=str(work / f"p{n}" / "embctl"))

            sent = {}

            def run_pull():
                server.reset_stats()
                e = fresh_env()
                s = wall([embctl, "pull", "all-MiniLM-L6-v2", "-q"], e)
                sent["embctl"] = server.bytes_sent
                shutil.rmtree(Path(e["HF_HOME"]).parent)
                return s

            def run_hf():
                server.reset_stats()
                e = fresh_env()
                includes = [a for p in NEEDED for a in ("--include", p)]
                s = wall([hf, "download", "sentence-transformers/all-MiniLM-L6-v2", *includes,
                          "--quiet"], e)
                sent["hf"] = server.bytes_sent
                shutil.rmtree(Path(e["HF_HOME"]).parent)
                return s

            t = interleaved({"embctl": run_pull, "hf": run_hf}, max(3, args.runs // 2))
            needed = sum(server.snapshot("sentence-transformers/all-MiniLM-L6-v2").files[p].size
                         for p in NEEDED)
            rows.append(("embctl pull vs hf download (same files), wall time",
                         f"{t['embctl']:.2f} s", f"{t['hf']:.2f} s",
                         f"{t['embctl'] / t['hf']:.2f}x time", "<= 1.0x"))
            rows.append(("embctl pull: bytes sent by the hub / needed files' bytes",
                         f"{sent['embctl']:,}", f"{needed:,}",
                         f"{sent['embctl'] / needed:.3f}", "1.000 (hf: "
                         f"{sent['hf'] / needed:.3f})"))
    out = table(rows, ("benchmark", "embctl", "baseline", "ratio", "goal"))
    print(out)
    if args.out:
        args.out.write_text(out + "\n")


if __name__ == "__main__":
    main()
