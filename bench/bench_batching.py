"""Batches by tokens (issue #23): embctl's in-process embedding against a plain loop over
token-sorted batches, and against a revision that cut batches by characters; three corpora.

    python bench/bench_batching.py --rounds 3 --before 47d6fdb
    python bench/bench_batching.py --windows    # padding against the window size only
    python bench/bench_batching.py --threads --rounds 3   # spinning; 2 calls x 1 thread

Corpora (deterministic, from this Python's own standard library):
- ``short``: 2,000 templated sentences of nearly one length;
- ``varied``: the first paragraph of every docstring of the stdlib (about 2,600-2,900 texts,
  24 tokens on average, up to the model's 256);
- ``long``: 300 paragraphs of about 1,500 characters (most truncated at 256 tokens).

For each round (rounds interleaved, medians reported), each in a process of its own:
- ``embctl NOW`` / ``embctl BEFORE``: ``embctl.load(REF, cache=False).embed(texts)`` per
  corpus, timed around ``embed`` only (the model loaded and warmed first), for ``st:`` and
  ``onnx:`` (fp32), with this tree's code and with ``--before``'s (a ``git worktree``);
- ``plain onnx``: onnxruntime on the same ONNX file with embctl's session options (one
  thread per physical core, no spinning), the texts sorted by tokens, batch sizes 8 to 64:
  the best of them counts;
- ``plain st``: ``SentenceTransformer.encode`` over token-sorted chunks, batch 16 to 128: the
  best counts;
- the whole ``embctl embed --no-cache`` process on ``varied``, NOW and BEFORE.

Also: the padding ratio (tokens computed, padded, over the real tokens) of each embctl's
batches, and the cosine of NOW's vectors to BEFORE's in input order (min over the corpus).
The model is all-MiniLM-L6-v2 as ``embctl-test/minilm-noonnx`` on a local test hub, pulled
for st and exported for onnx into the benchmark's own folders (removed at the end).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import common

REPO = "embctl-test/minilm-noonnx"
REFS = {"st": f"st:{REPO}", "onnx": f"onnx:{REPO}"}
CORPORA = ("short", "varied", "long")


def docstrings() -> list[str]:
    """The first paragraph of each docstring in the stdlib, in file order, once each."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen, out = set(), []
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                text = " ".join(doc.split("\n\n")[0].split())
                if len(text.split()) >= 3 and text not in seen:
                    seen.add(text)
                    out.append(text)
    return out


def corpora() -> dict[str, list[str]]:
    docs = docstrings()
    long, para = [], ""
    for text in docs:
        para = f"{para} {text}".strip()
        if len(para) >= 1500:
            long.append(para)
            para = ""
    short = [f"Order {i} was shipped to customer {i * 7 % 1000} on day {i % 28 + 1}."
             for i in range(2000)]
    return {"short": short, "varied": docs[:2900], "long": long[:300]}


# -- the worker: one process, one kind of measurement ------------------------------------------


def _lengths(tok, texts: list[str]) -> list[int]:
    return [len(e.ids) for e in tok.encode_batch(texts)]


def _padding(batches: list[list[str]], tok) -> tuple[int, int]:
    padded = real = 0
    for batch in batches:
        n = _lengths(tok, batch)
        padded += len(n) * max(n)
        real += sum(n)
    return padded, real


def _tokenizer(snapshot: Path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(snapshot / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    return tok


def worker_embctl(task: dict) -> dict:
    import numpy as np

    import embctl

    model = embctl.load(task["ref"], cache=False)
    model.embed([f"warm up {i}" for i in range(32)])
    vectorizer = model._vectorizer
    tok = _tokenizer(Path(model._embedder.path))
    out = {}
    for name, texts in task["corpora"].items():
        job = vectorizer.plan(texts)
        order = {k: t for k, t in zip(job.keys, texts, strict=True)}
        padded, real = _padding([[order[k] for k in b] for b in job.batches], tok)
        start = time.perf_counter()
        vecs = model.embed(texts)
        seconds = time.perf_counter() - start
        np.save(Path(task["out"]) / f"{name}.npy", vecs)
        out[name] = {"seconds": seconds, "padded": padded, "real": real}
    return out


def _session(onnx: str, spin: str = "0"):
    """onnxruntime on ``onnx`` with embctl's session options (embctl_onnx/session.py), idle
    threads spinning or not."""
    import onnxruntime as ort

    sys.path.insert(0, str(common.ROOT / "plugins"))
    from embctl_onnx.session import physical_cores

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = physical_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    return ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])


def _plain_loop(session, enc: list, size: int) -> None:
    """The plain loop: encodings sorted by tokens, ``size`` a call, padded per call, mean
    pooled and normalized."""
    import numpy as np

    order = sorted(range(len(enc)), key=lambda i: -len(enc[i].ids))
    for a in range(0, len(order), size):
        rows = [enc[i] for i in order[a:a + size]]
        width = max(len(e.ids) for e in rows)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(rows):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]
        vec = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        _ = vec / np.linalg.norm(vec, axis=1, keepdims=True)


def worker_plain_onnx(task: dict) -> dict:
    """The plain loop, tokenizing included, at each batch size."""
    session = _session(task["onnx"])
    tok = _tokenizer(Path(task["snapshot"]))
    _plain_loop(session, tok.encode_batch([f"warm up {i}" for i in range(32)]), 16)
    out = {}
    for name, texts in task["corpora"].items():
        for size in (8, 16, 32, 64):
            start = time.perf_counter()
            _plain_loop(session, tok.encode_batch(texts), size)
            out[f"{name}/{size}"] = {"seconds": time.perf_counter() - start}
    return out


def worker_spin(task: dict) -> dict:
    """The plain loop on ``varied`` at batch 32 (tokenized before), spinning or not."""
    session = _session(task["onnx"], task["spin"])
    enc = _tokenizer(Path(task["snapshot"])).encode_batch(task["texts"])
    _plain_loop(session, enc, 32)
    start = time.perf_counter()
    _plain_loop(session, enc, 32)
    return {"seconds": time.perf_counter() - start}


def threads(rounds: int, work: Path) -> str:
    """Spinning on and off (quiet, and beside a process busy on one core), and two
    single-threaded calls in flight against one call on two threads (whole processes)."""
    env, snapshot, onnx = setup(work)
    texts = corpora()["varied"]
    varied = work / "varied.txt"
    varied.write_text("".join(t + "\n" for t in texts))
    times: dict[str, list[float]] = {}
    embed = [sys.executable, "-m", "embctl", "embed", REFS["onnx"], "--lines", "--no-cache",
             "-q", "-i", str(varied), "-o", os.devnull]
    for _ in range(rounds):
        for load in ("quiet", "loaded"):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) \
                if load == "loaded" else None
            try:
                for spin in ("0", "1"):
                    task = {"spin": spin, "texts": texts, "snapshot": str(snapshot),
                            "onnx": str(onnx)}
                    times.setdefault(f"plain loop, spinning {spin}, {load}", []).append(
                        run_worker("spin", task, env)["seconds"])
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
        for name, extra in (("embctl embed: 1 call on 2 threads", []),
                            ("embctl embed: 2 calls of 1 thread", ["-O", "threads=1",
                                                                   "--concurrency", "2"])):
            start = time.perf_counter()
            subprocess.run([*embed, *extra], env=env, check=True)
            times.setdefault(name, []).append(time.perf_counter() - start)
    rows = [(name, f"{statistics.median(v):.2f}", f"{len(texts) / statistics.median(v):.0f}")
            for name, v in times.items()]
    return common.table(rows, ("varied, onnx fp32", "median s", "texts/s"))


def worker_plain_st(task: dict) -> dict:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(task["snapshot"], device="cpu", local_files_only=True)
    tok = _tokenizer(Path(task["snapshot"]))
    st.encode([f"warm up {i}" for i in range(32)])
    out = {}
    for name, texts in task["corpora"].items():
        n = _lengths(tok, texts)
        ordered = [texts[i] for i in sorted(range(len(texts)), key=lambda i: -n[i])]
        for size in (16, 32, 64, 128):
            start = time.perf_counter()
            for a in range(0, len(ordered), size):
                st.encode(ordered[a:a + size], batch_size=size, show_progress_bar=False)
            out[f"{name}/{size}"] = {"seconds": time.perf_counter() - start}
    return out


# -- the driver ----------------------------------------------------------------------------


def run_worker(kind: str, task: dict, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", kind], input=json.dumps(task),
                          env=env, capture_output=True, text=True, cwd=common.ROOT / "bench")
    if proc.returncode != 0:
        raise SystemExit(f"worker {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def code_env(base: dict[str, str], root: Path) -> dict[str, str]:
    paths = [str(root), str(root / "plugins"), str(common.ROOT / "tests")]
    return {**base, "PYTHONPATH": os.pathsep.join(paths)}


def setup(work: Path) -> tuple[dict[str, str], Path, Path]:
    """Pull st and onnx (an export) of the no-ONNX repo; -> (offline env, snapshot, onnx)."""
    sys.path.insert(0, str(common.ROOT / "tests"))
    from support.hub import HubServer
    from support.onnx_export_fixtures import build_minilm_noonnx_repo

    build_minilm_noonnx_repo(work / "hub")
    env = code_env(common.clean_env(HF_HOME=str(work / "hf"), EMBCTL_HOME=str(work / "home"),
                                    TOKENIZERS_PARALLELISM="false"), common.ROOT)
    with HubServer(work / "hub") as hub:
        for ref in REFS.values():
            subprocess.run([sys.executable, "-m", "embctl", "pull", ref, "-q"], check=True,
                           env={**env, "HF_ENDPOINT": hub.url})
    snapshot = next((work / "hf" / "hub").glob("models--*/snapshots/*"))
    onnx = next((work / "home").rglob("*.onnx"))
    return {**env, "HF_HUB_OFFLINE": "1"}, snapshot, onnx


def window_padding(snapshot: Path | None = None) -> str:
    """Padding (computed / real tokens) of the onnx backend's cuts against the window size:
    the core's own `split_padded` over each window's token counts, no model run."""
    sys.path.insert(0, str(common.ROOT))
    sys.path.insert(0, str(common.ROOT / "tests"))
    from support.hub.repos import minilm_source

    from embctl.embed.batching import split_padded

    tok = _tokenizer(snapshot or minilm_source())
    rows = []
    for name, texts in corpora().items():
        lengths = _lengths(tok, texts)
        cells = [name, str(len(texts))]
        for window in (64, 256, 1024, 4096):
            padded = 0
            for a in range(0, len(lengths), window):
                n = sorted(lengths[a:a + window], reverse=True)
                padded += sum((c - b) * n[b] for b, c in split_padded(n, 64, 16, 2048))
            cells.append(f"{padded / sum(lengths):.3f}")
        rows.append(tuple(cells))
    return common.table(rows, ("corpus", "texts", "window 64", "256", "1024", "4096"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default="HEAD~1", help="the revision to compare with")
    parser.add_argument("--windows", action="store_true",
                        help="only the padding of each window size (seconds, no model run)")
    parser.add_argument("--threads", action="store_true",
                        help="only onnxruntime's spinning and threads-vs-calls, on varied")
    parser.add_argument("--backend", choices=sorted(REFS), default=None,
                        help="only this backend (and its plain loop); default: both")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.windows:
        print(window_padding())
        return
    if args.threads:
        work = Path(tempfile.mkdtemp(prefix="bench-threads-"))
        try:
            print(threads(args.rounds, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.worker:
        task = json.loads(sys.stdin.read())
        print(json.dumps(globals()[f"worker_{args.worker}"](task)))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-batching-"))
    try:
        result = bench(args, work)
    finally:
        subprocess.run(["git", "-C", str(common.ROOT), "worktree", "remove", "--force",
                        str(work / "before")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(report(result))
    out = common.ROOT / "bench" / "results" / f"batching-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))


def bench(args: argparse.Namespace, work: Path) -> dict:
    subprocess.run(["git", "-C", str(common.ROOT), "worktree", "add", "-q", "--detach",
                    str(work / "before"), args.before], check=True)
    env, snapshot, onnx = setup(work)
    texts = corpora()
    codes = {"now": common.ROOT, "before": work / "before"}
    varied = work / "varied.txt"
    varied.write_text("".join(t + "\n" for t in texts["varied"]))
    rows: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for backend, ref in REFS.items():
            if args.backend and backend != args.backend:
                continue
            for code, root in codes.items():
                folder = work / "vectors" / f"{code}-{backend}"
                folder.mkdir(parents=True, exist_ok=True)
                task = {"ref": ref, "corpora": texts, "out": str(folder)}
                rows.setdefault(f"embctl {code} {backend}", []).append(
                    run_worker("embctl", task, code_env(env, root)))
                cmd = [sys.executable, "-m", "embctl", "embed", ref, "--lines", "--no-cache",
                       "-q", "-i", str(varied), "-o", os.devnull]
                start = time.perf_counter()
                subprocess.run(cmd, env=code_env(env, root), check=True)
                rows.setdefault(f"process {code} {backend}", []).append(
                    {"varied": {"seconds": time.perf_counter() - start}})
        task = {"corpora": texts, "snapshot": str(snapshot), "onnx": str(onnx)}
        for backend in REFS:
            if not args.backend or backend == args.backend:
                rows.setdefault(f"plain {backend}", []).append(
                    run_worker(f"plain_{backend}", task, env))
    return {"rows": rows, "counts": {k: len(v) for k, v in texts.items()},
            "cosine": cosines(work / "vectors"), "cpu": cpu_flags(), "rounds": args.rounds,
            "before": args.before}


def cosines(folder: Path) -> dict[str, float]:
    import numpy as np

    out = {}
    for backend in REFS:
        if not (folder / f"now-{backend}").is_dir():
            continue
        for name in CORPORA:
            a = np.load(folder / f"now-{backend}" / f"{name}.npy")
            b = np.load(folder / f"before-{backend}" / f"{name}.npy")
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            out[f"{backend} {name}"] = float(cos.min())
    return out


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text()
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni") if f in flags)


def med(rows: list[dict], key: str, field: str = "seconds") -> float:
    return statistics.median(r[key][field] for r in rows)


def report(result: dict) -> str:
    rows, counts = result["rows"], result["counts"]
    lines = [f"{result['rounds']} rounds, medians; CPU: {result['cpu']}; before = "
             f"{result['before']}", ""]
    table = []
    measured = [b for b in REFS if f"plain {b}" in rows]
    for backend in measured:
        plain = rows[f"plain {backend}"]
        for name in CORPORA:
            sizes = sorted({int(k.split("/")[1]) for k in plain[0] if k.startswith(name + "/")})
            best = min(sizes, key=lambda s: med(plain, f"{name}/{s}"))
            base = counts[name] / med(plain, f"{name}/{best}")
            now = counts[name] / med(rows[f"embctl now {backend}"], name)
            before = counts[name] / med(rows[f"embctl before {backend}"], name)
            pad = {c: rows[f"embctl {c} {backend}"][0][name] for c in ("now", "before")}
            table.append((backend, name, counts[name], f"{base:.0f} (batch {best})",
                          f"{before:.0f}", f"{now:.0f}", f"{now / base:.2f}x",
                          f"{now / before:.2f}x",
                          f"{pad['before']['padded'] / pad['before']['real']:.2f}",
                          f"{pad['now']['padded'] / pad['now']['real']:.2f}",
                          f"{result['cosine'][f'{backend} {name}']:.6f}"))
    lines.append(common.table(table, (
        "backend", "corpus", "texts", "plain loop texts/s", "before texts/s", "now texts/s",
        "now / plain", "now / before", "padding before", "padding now", "min cosine")))
    lines.append("")
    proc = []
    for backend in measured:
        now = med(rows[f"process now {backend}"], "varied")
        before = med(rows[f"process before {backend}"], "varied")
        proc.append((backend, f"{before:.1f}", f"{now:.1f}", f"{before / now:.2f}x"))
    lines.append(common.table(proc, ("embctl embed --no-cache, varied", "before s", "now s",
                                     "speed-up")))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
