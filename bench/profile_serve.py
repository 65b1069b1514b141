"""Where a served request's time goes: ``embctl serve`` sampled by py-spy while the clients of
bench_serve.py run, each thread's samples sorted into what it was doing.

    pip install py-spy
    python bench/profile_serve.py --texts 2048 --clients 8 --per-request 16

The server runs as bench_serve.py runs it (model loaded, vector cache empty, the same texts and
clients).  py-spy samples every thread of the server 100 times a second, idle ones included
(``--idle``), without pausing it (``--nonblocking``).  Each sample's stack goes to the first
category whose pattern one of its frames matches (innermost first), per thread:

- the worker thread (``embctl-serve:MODEL``): the model's forward pass, tokenizing, the vector
  cache (hashing, SQLite, the commit queue), batching and planning, waiting for work;
- the event loop (the main thread): JSON parsing, the response's encoding (base64, JSON), the
  HTTP protocol, the hand-offs (futures, ``call_soon_threadsafe``), waiting in ``select``;
- everything else (the commit thread, torch's own threads are native and not Python's).

The "busy" share of the worker is what the model could not be given more of: every other
share of its time is the server's own cost or a wait for clients.  Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_serve import MODEL, make_texts, prepare_home, served_seconds
from support.serve import start_serve, stop

#: (category, regex over one frame "function (file:line)"), innermost frame first wins.
WORKER = [
    ("waiting for requests", r"^(\w+\.)?(get|wait) \((queue|threading)\.py"),
    ("tokenizing", r"(TokenCounter|_encode_plus|encode_batch|token_lengths|\btokenize\b)"),
    ("model forward", r"\((torch|transformers|onnxruntime)/"),
    ("vector cache", r"\((embctl/vectors|embctl/stores)/|sqlite3|hashlib"),
    ("metrics", r"embctl/serve/metrics"),
    ("batching, planning, answering", r"\(embctl/(embed|serve)/"),
]
LOOP = [
    ("waiting (select)", r"^(\w+\.)?(select|poll) \(selectors\.py"),
    ("request JSON parse", r"^(parse_openai|parse_json|parse_input|loads|decode) \("),
    ("response encode", r"^(openai_response|ollama_response|dumps|b64encode|_tolist) \("),
    ("metrics", r"embctl/serve/metrics"),
    ("HTTP protocol", r"\((uvicorn|h11|httptools|starlette)/"),
    ("hand-offs", r"\(asyncio/|embctl/serve/"),
]


def classify(frames: list[str], rules: list[tuple[str, str]]) -> str:
    for frame in reversed(frames):  # py-spy's raw lines are root first
        for name, pattern in rules:
            if re.search(pattern, frame):
                return name
    return "other"


def summarize(raw: Path) -> dict[str, collections.Counter]:
    """thread -> category -> samples, from py-spy's raw (collapsed) output."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0]
        name = re.sub(r"\(0x[0-9a-f]+\)|\s+", " ", thread).strip()
        if "embctl-serve:" in thread:
            group, rules = "worker", WORKER
        elif "MainThread" in thread or "(1)" in thread:
            group, rules = "event loop", LOOP
        else:
            group, rules = f"other ({name[:40]})", []
        out[group][classify(frames[1:], rules)] += int(count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-request", type=int, default=16)
    parser.add_argument("--keep", default=None, help="copy py-spy's raw output here")
    parser.add_argument("--raw", default=None, help="summarize this raw output of an "
                        "earlier run (--keep) instead of running")
    args = parser.parse_args()
    if args.raw:
        report(summarize(Path(args.raw)))
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("profile_serve: needs py-spy (pip install py-spy)")

    base = Path(tempfile.mkdtemp(prefix="profile-serve-"))
    try:
        env = prepare_home(base, None)
        proc, url = start_serve({**env, "EMBCTL_HOME": str(base / "embctl")}, "--no-access-log")
        try:
            served_seconds(url, make_texts(64, 0, "warm-up"), 1, args.per_request)
            raw = base / "raw.txt"
            sampler = subprocess.Popen([spy, "record", "--pid", str(proc.pid), "--threads",
                                        "--idle", "--nonblocking", "--format", "raw", "--rate",
                                        "100", "-o", str(raw)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            seconds = served_seconds(url, make_texts(args.texts, 1, "profile"), args.clients,
                                     args.per_request)
            sampler.send_signal(signal.SIGINT)
            sampler.wait(60)
        finally:
            stop(proc)
        if args.keep:
            shutil.copy(raw, args.keep)
        found = summarize(raw)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"{args.texts} texts, {args.clients} clients x {args.per_request} texts a request: "
          f"{seconds:.1f} s, {args.texts / seconds:.0f} texts/s; {MODEL}\n")
    report(found)


def report(found: dict[str, collections.Counter]) -> None:
    for group in sorted(found, key=lambda g: (g != "worker", g != "event loop", g)):
        counts = found[group]
        total = sum(counts.values())
        if total < 20 or set(counts) == {"other"}:
            continue  # idle helper threads (asyncio's pool, tqdm's monitor, the committer)
        print(f"| {group} | samples | share |\n|---|---|---|")
        for name, n in counts.most_common():
            print(f"| {name} | {n} | {n / total:.1%} |")
        print()


if __name__ == "__main__":
    main()
