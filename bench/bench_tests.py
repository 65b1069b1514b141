"""The test suite's own cost: wall time, temporary bytes and slowest tests, per revision.

Each revision named runs from a clone of this repository (``git clone`` at that commit, in a
temporary folder) with this environment's interpreter and the clone first on ``PYTHONPATH``,
so an old revision's suite runs its own code.  For each revision and each selection (the whole
suite, and where the revision has the ``e2e`` marker, each tier alone) it records:

- wall seconds of ``python -m pytest``, from a cold pytest cache (as a fresh CI clone is:
  the ONNX export is built in that run) unless ``--warm``;
- bytes written under the run's temporary folders: pytest's base folder (every test's folder
  kept for the count, ``tmp_path_retention_policy=all``; hard links counted once, as ``du``
  does) plus the ``embctl-serve-*`` folders the serve tests make beside it;
- the pass/fail/skip counts, and the ten slowest tests (``--durations``).

    python bench/bench_tests.py --rev fabbd77~1 --rev HEAD            # before / after
    python bench/bench_tests.py --rev HEAD --select all --select "not e2e" -- -n 2

The table goes to stdout and a JSON record to bench/results/tests-<date>.json.  Folders are
removed after each run (a run of the old suite writes ~18 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed).*?) in ([\d.]+)s", re.M)
DURATION = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)", re.M)


def tree_bytes(*folders: Path) -> int:
    """Bytes of the files under ``folders``, each inode once (links are not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder in folders:
        for base, dirs, files in os.walk(folder):
            for name in files + dirs:
                try:
                    st = os.lstat(os.path.join(base, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512 if name in files else 0
    return total


def clone(rev: str, into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "-q", rev], check=True)
    return into


def has_e2e(repo: Path) -> bool:
    return "e2e:" in (repo / "pyproject.toml").read_text()


def run_suite(repo: Path, select: str, extra: list[str], warm: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-tests-"))
    base, cache, serve_tmp = work / "base", work / "cache", work / "tmp"
    serve_tmp.mkdir()
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"--basetemp={base}",
            "-o", "tmp_path_retention_policy=all", "--durations=10"]
    if not warm:
        args += ["-o", f"cache_dir={cache}"]
    if select != "all":
        args += ["-m", select]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "plugins")]),
           "TMPDIR": str(serve_tmp)}
    start = time.monotonic()
    proc = subprocess.run([*args, *extra], cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    written = tree_bytes(base, serve_tmp)
    summary = SUMMARY.findall(proc.stdout)
    slowest = [(float(s), when, test) for s, when, test in DURATION.findall(proc.stdout)][:10]
    shutil.rmtree(work, ignore_errors=True)
    log = ROOT / "bench" / "results" / f"tests-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)  # the whole output, to read the failures
    return {"select": select, "extra": extra, "warm": warm, "seconds": round(seconds, 1),
            "temp_bytes": written, "rc": proc.returncode,
            "summary": summary[-1][0] if summary else proc.stdout[-500:],
            "slowest": slowest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", action="append", required=True, help="a git revision")
    parser.add_argument("--select", action="append",
                        help="'all', or a -m expression ('not e2e', 'e2e'); default: all and "
                             "each tier the revision has")
    parser.add_argument("--warm", action="store_true", help="keep .pytest_cache (warm)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    opts = parser.parse_args(argv)
    records = []
    for rev in opts.rev:
        with tempfile.TemporaryDirectory(prefix="bench-tests-src-") as src:
            repo = clone(rev, Path(src) / "repo")
            selects = opts.select or (["all", "not e2e", "e2e"] if has_e2e(repo) else ["all"])
            for select in selects:
                record = {"rev": rev, **run_suite(repo, select, opts.pytest_args, opts.warm)}
                records.append(record)
                print(f"{rev:>12} {select:>9} {record['seconds']:>8.1f} s "
                      f"{record['temp_bytes'] / 1e9:>7.2f} GB  {record['summary']}",
                      file=sys.stderr, flush=True)
    print("| revision | tests | wall | temp written | result |\n|---|---|---|---|---|")
    for r in records:
        print(f"| {r['rev']} | {r['select']} {' '.join(r['extra'])} | {r['seconds']:.0f} s | "
              f"{r['temp_bytes'] / 1e9:.2f} GB | {r['summary']} |")
    for r in records:
        print(f"\nslowest, {r['rev']} {r['select']}:")
        for seconds, when, test in r["slowest"]:
            print(f"  {seconds:7.2f} s {when:8} {test}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"tests-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(records, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
