"""`embctl embed --engine ray` and `embctl.ray.embed` on a real local Ray (2 CPUs, 2 actors),
with the real all-MiniLM-L6-v2.

Every ``--engine ray`` run is ``python -m embctl`` in a process of its own (the e2e tier): Ray
is started in it, inherits its environment (the test's home), and is stopped with it.  What
needs no Ray (single-process embed to compare with, a dry run, usage errors, the tally's
rule) runs in-process.

Each Ray run starts a local cluster (about 10 s): checks share a run where that stays honest
(the kill run is also the run compared with single-process embed, and its rerun the cache
check).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.runner import NO_HUB, one_line_error

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

MODEL = "all-MiniLM-L6-v2"
RAY = ("--engine", "ray", "--workers", "2")
SUMMARY = re.compile(r"embctl: ([\d,]+) lines? read, ([\d,]+) embedded \(([\d,]+) cache hits?, "
                     r"([\d,]+) computed\), ([\d,]+) skipped")


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def corpus(n: int) -> list[dict]:
    return [{"id": i, "text": f"document {i} on topic {i % 89}, " + "words " * (i % 23),
             "meta": {"n": i, "tag": f"t{i % 5}"}} for i in range(n)]


def summary(stderr: str) -> tuple[int, ...]:
    """The counters of the summary, which must be stderr's last line."""
    last = stderr.strip().splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, stderr
    return tuple(int(g.replace(",", "")) for g in match.groups())


def read_dataset(folder: Path) -> list[dict]:
    return pq.read_table(folder).to_pylist()


def store_rows(home: Path) -> int:
    total = 0
    for path in (home / "embctl" / "vectors").glob("*.sqlite"):
        conn = sqlite3.connect(path, timeout=30)
        try:
            total += conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        except sqlite3.OperationalError:  # created, schema not committed yet
            pass
        finally:
            conn.close()
    return total


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below ``root`` (Ray's raylet and workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found.append((pid, cmd))
            todo.append(pid)
    return found


def wait_for_rows(proc: subprocess.Popen, home: Path, rows: int, limit: float = 300) -> int:
    """Wait until the vector cache holds ``rows`` (the job is computing); -> the count."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        committed = store_rows(home)
        if committed >= rows:
            return committed
        time.sleep(0.2)
    _, err = proc.communicate(timeout=60) if proc.poll() is not None else ("", "")
    pytest.fail(f"the job never reached {rows} cached vectors (rc {proc.poll()}): {err}")


@pytest.mark.e2e
def test_ray_equals_single_process_with_a_killed_actor_then_reruns_from_cache(pulled, tmp_path):
    n = 800  # 50 batches of 16: the kill lands after 4, with ~45 left to retry around it
    src = write_jsonl(tmp_path / "in.jsonl", [*corpus(n)[:400], "", *corpus(n)[400:]])
    single = pulled("embed", MODEL, "-i", str(src), "--no-cache", "-q")
    assert single.returncode == 0, single.stderr
    expected = {row["id"]: row["embedding"] for row in map(json.loads, single.stdout.splitlines())}

    proc = pulled.popen("embed", MODEL, *RAY, "-i", str(src), "-o", str(tmp_path / "out"),
                        "--batch-size", "16")
    wait_for_rows(proc, pulled.home, 64)
    actors = [pid for pid, cmd in descendants(proc.pid) if cmd.startswith("ray::MapWorker")]
    assert actors, descendants(proc.pid)
    os.kill(actors[0], signal.SIGKILL)  # mid-run: Ray restarts it and retries its batch
    assert proc.poll() is None, "the job ended before an actor could be killed"
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert out == ""  # results in DIR, nothing on stdout
    read, embedded, hits, computed, skipped = summary(err)
    assert (read, embedded, skipped) == (n + 1, n, 0)  # the blank line is read, not embedded
    assert hits + computed == n  # every input counted once, over both actors and the restart

    rows = read_dataset(tmp_path / "out")
    assert sorted(r["id"] for r in rows) == list(range(n))  # every input exactly once
    source = {r["id"]: r for r in corpus(n)}
    for row in rows:
        assert row["text"] == source[row["id"]]["text"]
        assert row["meta"] == source[row["id"]]["meta"]  # every other field kept
        got = np.asarray(row["embedding"], dtype=np.float32)
        assert np.allclose(got, expected[row["id"]], atol=1e-5), row["id"]

    rerun = pulled.process("embed", MODEL, *RAY, "-i", str(src), "-o", str(tmp_path / "again"))
    assert rerun.returncode == 0, rerun.stderr
    assert summary(rerun.stderr) == (n + 1, n, n, 0, 0)  # all cache hits
    again = {r["id"]: r["embedding"] for r in read_dataset(tmp_path / "again")}
    assert all(again[r["id"]] == r["embedding"] for r in rows)


def test_a_batch_or_file_counted_again_by_a_retried_task_counts_once():
    """Ray retries the whole task of an actor killed mid-task, batches it had counted
    included (seen in CI: 1,264 embedded of 1,200 after the kill above): counts come keyed by
    their rows (or file) and a key counts once.  The kill test above hits this only when the
    kill falls between two batches of one task, so the tally's rule is checked directly too."""
    from embctl.scale.counting import _Tally

    tally = _Tally()
    tally.add({"embedded": 64, "computed": 64}, key="rows a:1 a:64 64")
    tally.add({"embedded": 64, "hits": 64}, key="rows a:1 a:64 64")  # the retry
    tally.add({"embedded": 11, "computed": 11}, key="rows a:65 a:75 11")
    tally.add({"read": 76, "blank": 1}, ["a:3: bad"], key="file a")
    tally.add({"read": 76, "blank": 1}, ["a:3: bad"], key="file a")  # a retried read task
    tally.add({"embedded": 5, "computed": 5})  # no key (the Python API): always added
    counts, warnings = tally.totals()
    assert (counts["embedded"], counts["computed"], counts["hits"]) == (80, 80, 0)
    assert (counts["read"], counts["blank"], warnings) == (76, 1, ["a:3: bad"])


@pytest.mark.e2e
def test_bad_lines_fail_naming_file_and_line_or_are_skipped(pulled, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", corpus(40))
    bad = write_jsonl(folder / "b.jsonl", [{"id": 100, "text": "fine"}, "{not json",
                                           {"id": 102, "text": 7}, {"id": 103, "text": "ok"}])
    fail = pulled.process("embed", MODEL, *RAY, "-i", str(folder), "-o", str(tmp_path / "f"))
    assert fail.returncode == 1
    line = one_line_error(fail)
    assert f"{bad}: line 2: invalid JSON" in line and "--on-error skip" in line
    assert not (tmp_path / "f").exists()  # no half dataset
    assert not list(tmp_path.glob(".f.*"))

    skip = pulled.process("embed", MODEL, *RAY, "-i", str(tmp_path / "docs" / "*.jsonl"),
                          "-o", str(tmp_path / "s"), "--on-error", "skip")
    assert skip.returncode == 0, skip.stderr
    assert f"{bad}: line 2: invalid JSON" in skip.stderr
    assert f"{bad}: line 3: 'text' is int, not a string; skipped" in skip.stderr
    assert summary(skip.stderr)[:2] == (44, 42) and summary(skip.stderr)[4] == 2
    assert sorted(r["id"] for r in read_dataset(tmp_path / "s")) == [*range(40), 100, 103]


@pytest.mark.e2e
def test_ctrl_c_stops_the_job_and_keeps_what_was_computed(pulled, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", corpus(4000))
    proc = pulled.popen("embed", MODEL, *RAY, "-i", str(src), "-o", str(tmp_path / "out"),
                        "--batch-size", "16")
    committed = wait_for_rows(proc, pulled.home, 64)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "embctl: interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    kept = store_rows(pulled.home)
    assert committed <= kept < 4000
    # A rerun finds them: single-process embed's dry run reads the same cache.
    plan = pulled("embed", MODEL, "-i", str(src), "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert f"4,000 inputs: {kept:,} cached" in plan.stderr


@pytest.mark.e2e
def test_a_worker_that_cannot_get_the_model_fails_the_job_naming_its_node(embctl, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", corpus(10))
    proc = embctl.process("embed", MODEL, *RAY, "-i", str(src), "-o", str(tmp_path / "out"),
                          env={"HF_ENDPOINT": NO_HUB})
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert re.search(r"worker on node \S+ \([\d.]+\): all-MiniLM-L6-v2: not cached, and the Hub "
                     r"cannot be reached", line), line
    assert not (tmp_path / "out").exists()


def test_options_that_mean_nothing_on_ray_are_usage_errors(pulled, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", corpus(3))
    proc = pulled("embed", MODEL, "--engine", "ray", "--lines", "--format", "npy", "-i",
                  str(src), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "--engine ray does not take --lines, --format" in one_line_error(proc)
    proc = pulled("embed", MODEL, "--workers", "2", "-i", str(src))
    assert proc.returncode == 2 and "--workers needs --engine ray" in one_line_error(proc)
    proc = pulled("embed", MODEL, "--engine", "ray", "-i", str(src))
    assert proc.returncode == 2 and "not stdout" in one_line_error(proc)


API = r"""
import json, sys
import embctl.ray
assert "ray" not in sys.modules  # importing embctl.ray does not import ray
import ray
import numpy as np
ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
rows = json.loads(sys.argv[1])
ds = ray.data.from_items(rows)
out = embctl.ray.embed(ds, "all-MiniLM-L6-v2", column="body", output_column="vec",
                       concurrency=2, batch_size=8).take_all()
print(json.dumps([{k: (np.asarray(v).tolist() if k == "vec" else v) for k, v in r.items()}
                  for r in out]))
"""


@pytest.mark.e2e
def test_python_api_keeps_every_other_column(pulled, tmp_path):
    rows = [{"key": f"k{i}", "body": f"sentence number {i}", "score": i / 4} for i in range(20)]
    proc = subprocess.run([sys.executable, "-c", API, json.dumps(rows)], env=pulled.env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = {r["key"]: r for r in json.loads(proc.stdout)}
    assert sorted(out) == sorted(r["key"] for r in rows)
    single = pulled("embed", MODEL, "--text-field", "body", "--no-cache", "-q",
                    input="".join(json.dumps(r) + "\n" for r in rows))
    assert single.returncode == 0, single.stderr
    for row in map(json.loads, single.stdout.splitlines()):
        got = out[row["key"]]
        assert set(got) == {"key", "body", "score", "vec"}
        assert got["body"] == row["body"] and got["score"] == row["score"]
        assert np.allclose(got["vec"], row["embedding"], atol=1e-5)
    assert store_rows(pulled.home) == 20  # the actors wrote the node's vector cache
