"""`embctl embed` end to end with the real all-MiniLM-L6-v2 from the test hub: in-process, and
as ``python -m embctl`` (the e2e tier) where the process boundary is the point: an all-cached
run that imports no torch, kill -9, concurrent processes, fresh interpreters' imports."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.runner import one_line_error

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "The refund policy allows returns within 30 days",
    "return guidelines",
    "weather forecast",
    "Ünïcödé and emoji 🙂 survive",
    "return guidelines",  # a repeat: embedded once
    "A somewhat longer sentence, so that the batch holds texts of different lengths.",
]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def parse(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """SentenceTransformer.encode of TEXTS, straight from the packaged model files."""
    from sentence_transformers import SentenceTransformer
    from support.hub import minilm_source

    st = SentenceTransformer(str(minilm_source()), device="cpu")
    vecs = st.encode(TEXTS, convert_to_numpy=True)
    return dict(zip(TEXTS, vecs, strict=True))


def store_files(home: Path) -> list[Path]:
    return sorted((home / "embctl" / "vectors").glob("*.sqlite"))


def count_rows(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.e2e  # the all-cached rerun imports no torch: -X importtime of a fresh process
def test_vectors_match_encode_and_second_run_needs_no_model(pulled, reference):
    rows = [{"id": i, "text": t, "meta": {"n": i, "f": 1.5}} for i, t in enumerate(TEXTS)]
    rows[1] = {"embedding": "stale", **rows[1]}  # an existing field is replaced, not doubled
    proc = pulled("embed", MODEL, input=jsonl(rows))
    assert proc.returncode == 0, proc.stderr
    out = parse(proc.stdout)
    assert [r["id"] for r in out] == list(range(len(TEXTS)))  # order kept
    for row, src in zip(out, rows, strict=True):
        assert row["meta"] == src["meta"] and row["text"] == src["text"]  # passthrough
        assert list(row)[-1] == "embedding"
        got = np.asarray(row["embedding"], dtype=np.float32)
        assert got.shape == (384,)
        assert np.abs(got - reference[src["text"]]).max() < 1e-5
    v = {r["text"]: np.asarray(r["embedding"]) for r in out}
    refund = v[TEXTS[0]]
    assert refund @ v["return guidelines"] > refund @ v["weather forecast"]
    assert "5 computed" in proc.stderr and "1 duplicate)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("embctl: 6 lines read")

    # Everything cached: all hits, and neither torch nor sentence_transformers is imported.
    env = {"PYTHONPROFILEIMPORTTIME": "1"}
    again = pulled.process("embed", MODEL, input=jsonl(rows), env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == proc.stdout
    assert "6 cache hits, 0 computed" in again.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in again.stderr.splitlines()
                if line.startswith("import time:")}
    assert "sentence_transformers" not in imported and "torch" not in imported


def test_lines_mode_npy_and_parquet(pulled, reference, tmp_path):
    text = "".join(t + "\n" for t in TEXTS[:3])
    proc = pulled("embed", MODEL, "--lines", input=text)
    assert proc.returncode == 0, proc.stderr
    out = parse(proc.stdout)
    assert [(r["id"], r["text"]) for r in out] == [(1, TEXTS[0]), (2, TEXTS[1]), (3, TEXTS[2])]

    npy = tmp_path / "v.npy"
    proc = pulled("embed", MODEL, "--lines", "-o", str(npy), "-q", input=text)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == ""
    matrix = np.load(npy)
    assert matrix.dtype == np.float32 and matrix.shape == (3, 384)
    assert np.abs(matrix[2] - reference[TEXTS[2]]).max() < 1e-5
    ids = (tmp_path / "v.ids.jsonl").read_text().split()
    assert ids == ["1", "2", "3"]

    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq_path = tmp_path / "v.parquet"
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(TEXTS[:3])]
    proc = pulled("embed", MODEL, "-o", str(pq_path), input=jsonl(rows))
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(pq_path)
    assert table.column("id").to_pylist() == ["doc-0", "doc-1", "doc-2"]
    emb = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert np.abs(emb - matrix).max() < 1e-6


BAD_CASES = [
    ("invalid JSON", b'{"text": "ok"}\n{"text": nope}\n', 2, "invalid JSON"),
    ("missing field", b'{"text": "ok"}\n{"body": "x"}\n', 2, "no 'text' field"),
    ("non-string", b'{"text": "ok"}\n{"text": 42}\n', 2, "not a string"),
    ("empty text", b'{"text": "ok"}\n{"text": "  "}\n', 2, "empty 'text'"),
    ("invalid UTF-8", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', 2, "invalid UTF-8"),
    ("BOM mid-input", b'{"text": "ok"}\n\xef\xbb\xbf{"text": "x"}\n', 2, "byte-order mark"),
    ("not an object", b'{"text": "ok"}\n["text"]\n', 2, "expected a JSON object"),
]


@pytest.mark.parametrize("name,data,line,message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_fails_with_line_number(pulled, name, data, line, message):
    proc = pulled("embed", MODEL, input=data)
    assert proc.returncode == 1
    error = one_line_error(subprocess.CompletedProcess(proc.args, 1, "", proc.stderr.decode()))
    assert f"line {line}:" in error and message in error, error
    assert proc.stdout == b""  # the failing window is not written: no torn line
    for path in store_files(pulled.home):  # nothing half-written in the cache
        assert count_rows(path) == 0


def test_skip_counts_bad_lines_and_tolerated_forms(pulled, reference):
    data = (b'\xef\xbb\xbf{"id": 1, "text": "return guidelines"}\r\n'  # BOM + CRLF: accepted
            b"\n"  # blank: ignored, counted
            b'{"id": 2, "text": nope}\n'
            b'{"id": 3, "text": "caf\xe9"}\n'
            b'{"id": 4, "text": ""}\n'
            b'{"id": 5, "text": "weather forecast"}\r\n'
            b'{"id": 6}\n')
    proc = pulled("embed", MODEL, "--on-error", "skip", input=data)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in out] == [1, 5]
    got = np.asarray(out[1]["embedding"], dtype=np.float32)
    assert np.abs(got - reference["weather forecast"]).max() < 1e-5
    err = proc.stderr.decode()
    for n in (3, 4, 5, 7):
        assert f"line {n}:" in err
    assert "7 lines read, 2 embedded" in err and "4 skipped" in err and "1 blank" in err


def test_huge_line_is_embedded_with_one_truncation_warning(pulled, tmp_path):
    big = tmp_path / "big.jsonl"
    with open(big, "w") as fh:
        fh.write(json.dumps({"id": "big", "text": "lorem ipsum dolor " * 2_800_000}) + "\n")
        fh.write(json.dumps({"id": "small", "text": "short"}) + "\n")
        # truncated too, but short enough for the plan's token count to say so (not cut)
        fh.write(json.dumps({"id": "mid", "text": "refund " * 400}) + "\n")
    assert big.stat().st_size > 50_000_000
    proc = pulled("embed", MODEL, "-i", str(big), "-o", str(tmp_path / "out.npy"))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "truncated" in line]
    assert len(warnings) == 1 and "2 inputs longer" in warnings[0]
    assert np.load(tmp_path / "out.npy").shape == (3, 384)


@pytest.mark.e2e  # SIGKILL mid-run
def test_kill_9_then_rerun_reuses_committed_batches(pulled, tmp_path):
    src = tmp_path / "in.jsonl"
    n = 1500
    src.write_text(jsonl([{"id": i, "text": f"document number {i} about topic {i % 97}"}
                          for i in range(n)]))
    proc = pulled.popen("embed", MODEL, "-i", str(src), "-o", str(tmp_path / "o.jsonl"),
                        "--batch-size", "16")
    deadline = time.monotonic() + 240
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        files = store_files(pulled.home)
        try:
            committed = count_rows(files[0]) if files else 0
        except sqlite3.OperationalError:  # the file exists, its schema is not committed yet
            committed = 0
        if committed >= 64:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "o.jsonl").exists()  # no half-written output file
    (path,) = store_files(pulled.home)
    survived = count_rows(path)
    assert survived >= committed
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    rerun = pulled("embed", MODEL, "-i", str(src), "-o", str(tmp_path / "o.jsonl"))
    assert rerun.returncode == 0, rerun.stderr
    assert f"{survived:,} cache hits, {n - survived:,} computed" in rerun.stderr
    lines = (tmp_path / "o.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == list(range(n))
    assert count_rows(path) == n


@pytest.mark.e2e  # four concurrent embctl processes
def test_four_concurrent_embeds_share_one_cache(pulled, tmp_path):
    # Overlapping inputs: every process writes rows that the others also write.
    texts = [f"shared sentence {i}" for i in range(160)]
    procs = []
    for k in range(4):
        part = texts[k * 20:k * 20 + 100]
        src = tmp_path / f"in{k}.jsonl"
        src.write_text(jsonl([{"id": t, "text": t} for t in part]))
        # One thread each: four processes on a small CI machine would otherwise oversubscribe.
        procs.append(pulled.popen("embed", MODEL, "-i", str(src), "--batch-size", "8",
                                  env={"OMP_NUM_THREADS": "1"}))
    results = [p.communicate(timeout=600) for p in procs]
    vectors: dict[str, list] = {}
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err and "warning" not in err, err
        for row in map(json.loads, out.splitlines()):
            assert vectors.setdefault(row["id"], row["embedding"]) == row["embedding"]
    assert len(vectors) == 160
    (path,) = store_files(pulled.home)
    assert count_rows(path) == 160  # no lost rows
    again = pulled("embed", MODEL, "-i", str(tmp_path / "in3.jsonl"))
    assert "100 cache hits, 0 computed" in again.stderr


def test_unusable_cache_warns_once_and_still_embeds(pulled):
    rows = jsonl([{"text": "return guidelines"}])
    first = pulled("embed", MODEL, input=rows, check=True)
    (path,) = store_files(pulled.home)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)  # corrupted
    proc = pulled("embed", MODEL, input=rows)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == first.stdout
    assert len([x for x in proc.stderr.splitlines() if "warning" in x]) == 1

    vectors = pulled.home / "embctl" / "vectors"
    for p in vectors.iterdir():
        p.unlink()
    vectors.rmdir()
    vectors.write_text("a file where the cache directory should be")
    proc = pulled("embed", MODEL, input=rows)
    assert proc.returncode == 0 and proc.stdout == first.stdout
    assert "vector cache unavailable" in proc.stderr


def test_offline_without_model_is_a_clear_error(embctl):
    proc = embctl("embed", MODEL, input='{"text": "x"}\n', env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    assert "HF_HUB_OFFLINE=1" in one_line_error(proc)


def test_pulls_missing_model_then_embeds(embctl, reference):
    proc = embctl("embed", MODEL, "-q", input='{"text": "weather forecast"}\n')
    assert proc.returncode == 0, proc.stderr
    got = np.asarray(json.loads(proc.stdout)["embedding"], dtype=np.float32)
    assert np.abs(got - reference["weather forecast"]).max() < 1e-5
    assert embctl.repo_dir.is_dir()


def test_cache_cap_evicts_and_ls_lists_vectors(pulled):
    rows = jsonl([{"text": f"sentence {i}"} for i in range(200)])
    proc = pulled("embed", MODEL, "--max-cache-size", "150kB", input=rows)
    assert proc.returncode == 0, proc.stderr
    assert "evicted" in proc.stderr
    (path,) = store_files(pulled.home)
    assert 0 < count_rows(path) < 200
    ls = pulled("ls", "--json")
    assert ls.returncode == 0, ls.stderr
    entries = [e for e in json.loads(ls.stdout) if e["kind"] == "vectors"]
    assert len(entries) == 1
    assert entries[0]["dim"] == 384 and entries[0]["count"] == count_rows(path)
    assert entries[0]["repo_id"] == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.e2e  # a heavy-import check: a fresh interpreter imports neither numpy nor torch
def test_python_api_shares_the_cli_cache(pulled, reference):
    pulled("embed", MODEL, input=jsonl([{"text": t} for t in TEXTS[:3]]), check=True)
    script = (
        "import sys, json, embctl\n"
        "assert 'numpy' not in sys.modules\n"
        f"m = embctl.load({MODEL!r})\n"
        f"v = m.embed({TEXTS[:3]!r})\n"
        "one = m.embed('weather forecast')\n"
        "print(json.dumps({'shape': v.shape, 'dtype': str(v.dtype), 'dim': m.dim,\n"
        "  'one': one.shape, 'rev': m.revision, 'torch': 'torch' in sys.modules,\n"
        "  'v': v.tolist(), 'info': m.info()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=pulled.env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["shape"] == [3, 384] and data["dtype"] == "float32" and data["dim"] == 384
    assert data["one"] == [384] and len(data["rev"]) == 40
    assert data["torch"] is False  # all three texts were cached by the CLI run
    got = np.asarray(data["v"], dtype=np.float32)
    assert np.abs(got[0] - reference[TEXTS[0]]).max() < 1e-5
    assert data["info"]["repo_id"] == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.e2e  # heavy-import checks: a fresh interpreter, -X importtime of a fresh process
def test_import_and_help_stay_light(pulled):
    script = ("import sys, embctl, embctl.embed.run, embctl.embed.dryrun, embctl.embed.session, "
              "embctl.vectors.scan\n"
              "heavy = [m for m in ('numpy', 'torch', 'sentence_transformers') "
              "if m in sys.modules]\n"
              "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", script], env=pulled.env, check=True)
    proc = pulled.process("embed", "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0 and "--on-error" in proc.stdout
    assert "| torch" not in proc.stderr and "| numpy" not in proc.stderr


@pytest.mark.e2e  # what a fresh interpreter imports
def test_st_dry_run_counts_the_tokens_computed_without_loading_torch(pulled, tmp_path):
    """The st backend counts tokens with its tokenizer.json alone: the plan (and so a dry
    run) sorts and cuts by tokens without torch; the count is what the model computes."""
    from support.hub.repos import minilm_source
    from support.runner import heavy_imports
    from tokenizers import Tokenizer

    texts = ["where is my refund", "a b c", " ".join(["refund"] * 400)]  # one truncated
    source = tmp_path / "in.txt"
    source.write_text("".join(t + "\n" for t in texts))
    tok = Tokenizer.from_file(str(minilm_source() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    expected = sum(len(tok.encode(t).ids) for t in texts)
    heavy, stderr = heavy_imports(pulled.env, "embed", "all-MiniLM-L6-v2", "--dry-run",
                                  "--lines", "-i", str(source),
                                  heavy=("torch", "transformers", "sentence_transformers"))
    assert heavy == [], heavy
    assert f"{expected:,} tokens" in stderr, stderr
