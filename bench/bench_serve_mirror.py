"""Pulling all-MiniLM-L6-v2 through `embctl serve`'s Hub mirror against pulling it from the
test hub itself (goal: <= 1.1x the time), each into an empty cache, whole-process wall time,
interleaved, medians.

    python bench/bench_serve_mirror.py [--runs 5] [--out FILE]

The mirror serves a cache that was pulled once from the same test hub; both contenders are
``embctl pull all-MiniLM-L6-v2 -q`` differing only in HF_ENDPOINT.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from itertools import count
from pathlib import Path

from common import bin_path, clean_env, interleaved, local_hub, table, wall


def home_env(home: Path, endpoint: str) -> dict[str, str]:
    return clean_env(HF_ENDPOINT=endpoint, HF_HOME=str(home / "hf"),
                     EMBCTL_HOME=str(home / "embctl"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    embctl = bin_path("embctl")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from support.hub import build_minilm_repo
        from support.serve import serving

        build_minilm_repo(work / "hub")
        with local_hub(work / "hub") as hub:
            served = home_env(work / "served", hub.url)
            wall([embctl, "pull", "all-MiniLM-L6-v2", "-q"], served)
            with serving(served, "--no-access-log") as (_, mirror_url):
                fresh = count()

                def pull_from(endpoint: str) -> float:
                    home = work / f"client{next(fresh)}"
                    try:
                        return wall([embctl, "pull", "all-MiniLM-L6-v2", "-q"],
                                    home_env(home, endpoint))
                    finally:
                        shutil.rmtree(home, ignore_errors=True)

                times = interleaved({"test hub": lambda: pull_from(hub.url),
                                     "embctl serve mirror": lambda: pull_from(mirror_url)},
                                    runs=args.runs)
    base = times["test hub"]
    rows = [(name, f"{t:.2f} s", f"{t / base:.2f}x") for name, t in times.items()]
    text = ("Pulling all-MiniLM-L6-v2 (91.6 MB, 12 files) into an empty cache, median of "
            f"{args.runs} (goal: mirror <= 1.1x)\n\n"
            + table(rows, ("source", "embctl pull", "vs test hub")))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
