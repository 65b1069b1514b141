"""Issue #10, the vector cases: wrong vectors from damaged weights (2), a broken vector cache
that ``verify --repair`` must mend (9), and failed runs that must leave no cache file (10).

Everything happens for real: the weights blob of the pulled all-MiniLM-L6-v2 (this test's own
copy of it, never the blob other tests' homes link) is overwritten the way bit rot or a bad copy
damages it, cache files made by ``embctl embed`` are truncated or replaced, and the openai runs
go to the fake server of ``openai_server``.  The runs are in-process; the two checks of a fresh
interpreter's imports are e2e.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.homes import own
from support.inprocess import environment
from support.openai_server import Fault
from support.runner import Embctl, one_line_error

MODEL = "all-MiniLM-L6-v2"
TENSOR = "encoder.layer.0.attention.self.query.weight"  # 576 KiB at 49 MB of the 91 MB blob
CLEAN = ["The refund policy allows returns within 30 days", "return guidelines",
         "weather forecast"]
MORE = ["a sentence embedded after the damage", "another one", "and a third"]


def lines(texts: list[str]) -> str:
    return "".join(t + "\n" for t in texts)


def vectors(stdout: str) -> np.ndarray:
    return np.array([json.loads(line)["embedding"] for line in stdout.splitlines()],
                    dtype=np.float32)


def embed(run: Embctl, texts: list[str], *args: str) -> subprocess.CompletedProcess:
    return run("embed", MODEL, "--lines", *args, input=lines(texts))


def vector_files(home: Path) -> list[str]:
    folder = home / "embctl" / "vectors"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def cache_file(home: Path) -> Path:
    (path,) = sorted((home / "embctl" / "vectors").glob("*.sqlite"))
    return path


def cached_rows(path: Path) -> np.ndarray:
    conn = sqlite3.connect(path, timeout=30)
    try:
        rows = [r[0] for r in conn.execute("SELECT vec FROM vectors")]
    finally:
        conn.close()
    return np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), -1)


def weights_blob(run: Embctl) -> Path:
    (link,) = (run.repo_dir / "snapshots").glob("*/model.safetensors")
    return link.resolve()


def tensor_span(path: Path, name: str) -> tuple[int, int]:
    """(offset, length) of a tensor's bytes in a safetensors file, from its JSON header."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    start, end = header[name]["data_offsets"]
    return 8 + size + start, end - start


def private_weights(run: Embctl) -> Path:
    """The weights blob of ``run``'s home made this test's own file (`support.homes.own`)
    with a modification time of its own, before any run reads it: no earlier test's damaged
    copy had this file's identity (inode, size, time), by which in-process runs share a
    loaded model."""
    blob = own(weights_blob(run))
    os.utime(blob)
    return blob


def damage(path: Path, data: bytes, *, keep_mtime: bool = False) -> None:
    """Write ``data`` over TENSOR.  ``keep_mtime``: size and modification time stay as they
    were, as with bit rot or a copy that preserves times: the file is replaced by such a copy
    (of a `private_weights` file), damaged, so that a model loaded from the clean file before
    is not the one this file loads."""
    if not keep_mtime:
        own(path)  # never the blob other tests' homes link
    assert path.stat().st_nlink == 1, "a private copy (private_weights), not a linked file"
    offset, length = tensor_span(path, TENSOR)
    assert len(data) == length
    before = path.stat()
    if keep_mtime:
        copy = path.with_name(path.name + ".copy")
        shutil.copy2(path, copy)
        os.replace(copy, path)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def random_bytes(length: int) -> bytes:
    """Random bits: some are NaN and inf, most are huge: the model's outputs become NaN."""
    return random.Random(7).randbytes(length)


def finite_garbage(length: int) -> bytes:
    """Random float32 values in [-1, 1): the model still gives finite, but wrong, vectors."""
    return np.random.default_rng(7).uniform(-1, 1, length // 4).astype("<f4").tobytes()


# -- 2. wrong vectors from damaged weights -------------------------------------------------


def test_nan_vectors_fail_the_run_and_are_never_written_or_cached(pulled):
    blob = private_weights(pulled)
    first = embed(pulled, CLEAN)
    assert first.returncode == 0, first.stderr
    damage(blob, random_bytes(tensor_span(blob, TENSOR)[1]), keep_mtime=True)

    proc = embed(pulled, CLEAN + MORE)
    assert proc.returncode == 1
    err = one_line_error(proc)
    assert "all-MiniLM-L6-v2" in err and "NaN" in err and "embctl verify" in err
    assert "3 of 3 inputs" in err  # the batch of the three new texts
    assert proc.stdout == "" and "null" not in proc.stdout
    rows = cached_rows(cache_file(pulled.home))
    assert len(rows) == len(CLEAN) and np.isfinite(rows).all()  # the clean ones, nothing more


def test_nan_guard_holds_for_any_backend_path_and_the_python_api(pulled, tmp_path):
    """A local model directory is not a cache blob (no hash to check): the core's guard is
    what stops it, for the CLI and for embctl.load alike."""
    (snapshot,) = (pulled.repo_dir / "snapshots").iterdir()
    local = tmp_path / "damaged-model"
    shutil.copytree(snapshot, local)  # links resolved: regular files
    weights = local / "model.safetensors"
    assert weights.is_file() and not weights.is_symlink()
    damage(weights, random_bytes(tensor_span(weights, TENSOR)[1]))

    proc = pulled("embed", str(local), "--lines", input=lines(MORE))
    assert proc.returncode == 1
    err = one_line_error(proc)
    assert "damaged-model" in err and "NaN" in err and "embctl verify" in err
    assert proc.stdout == ""
    assert vector_files(pulled.home) == []  # nothing committed: no cache file either

    import embctl
    from embctl.errors import EmbctlError

    with environment(pulled.env):  # embctl.load as a program run with pulled's environment
        m = embctl.load(str(local))
        try:
            m.embed(MORE)
        except EmbctlError as exc:
            refused = f"refused: {exc}"
        else:
            refused = "embedded"
        m.close()
    assert refused.startswith("refused:") and "NaN" in refused
    assert vector_files(pulled.home) == []


def test_damaged_weights_are_refused_and_repair_brings_back_the_clean_vectors(pulled):
    """Damage the check before computing sees (the file's time changed): nothing is computed
    from it, so the repair keeps the vectors computed before (docs/cache.md)."""
    reference = embed(pulled, CLEAN + MORE, "--no-cache")
    assert reference.returncode == 0, reference.stderr
    assert embed(pulled, CLEAN).returncode == 0
    blob = weights_blob(pulled)
    damage(blob, finite_garbage(tensor_span(blob, TENSOR)[1]))  # the file's time changes

    proc = embed(pulled, MORE)
    assert proc.returncode == 1
    err = one_line_error(proc)
    assert "model.safetensors" in err and "does not match its hash" in err
    assert "embctl verify all-MiniLM-L6-v2 --repair" in err
    assert proc.stdout == ""
    assert len(cached_rows(cache_file(pulled.home))) == len(CLEAN)
    hits = embed(pulled, CLEAN)  # made before the damage: still served, nothing computed
    assert hits.returncode == 0 and "3 cache hits, 0 computed" in hits.stderr

    repair = pulled("verify", MODEL, "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "dropped" not in repair.stdout
    again = embed(pulled, CLEAN + MORE)
    assert again.returncode == 0, again.stderr
    assert "3 cache hits, 3 computed" in again.stderr
    np.testing.assert_array_equal(vectors(again.stdout), vectors(reference.stdout))


def test_vectors_cached_from_silently_damaged_weights_do_not_survive_a_repair(pulled):
    """Damage that keeps the file's size and time (bit rot) cannot be seen without hashing
    91 MB on every run, and finite garbage looks like any vector: those get cached.  verify
    finds the damage; --repair drops the vectors of that revision with it."""
    blob = private_weights(pulled)
    reference = embed(pulled, CLEAN + MORE, "--no-cache")
    assert reference.returncode == 0, reference.stderr
    assert embed(pulled, CLEAN).returncode == 0
    damage(blob, finite_garbage(tensor_span(blob, TENSOR)[1]), keep_mtime=True)
    bad = embed(pulled, MORE)
    assert bad.returncode == 0, bad.stderr
    assert not np.allclose(vectors(bad.stdout), vectors(reference.stdout)[3:], atol=1e-3)

    check = pulled("verify", MODEL)
    assert check.returncode == 1 and "hash mismatch" in check.stdout
    repair = pulled("verify", MODEL, "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "dropped 6 vectors" in repair.stdout
    assert pulled("verify").returncode == 0
    again = embed(pulled, CLEAN + MORE)
    assert again.returncode == 0, again.stderr
    assert "0 cache hits, 6 computed" in again.stderr
    np.testing.assert_array_equal(vectors(again.stdout), vectors(reference.stdout))


def test_a_blob_replaced_by_another_tool_is_checked_again(pulled):
    """A blob replaced whole (a copy from a backup, another downloader) is a new file: embctl
    hashes it again before computing with it.  Wrong bytes are refused, right ones accepted."""
    reference = embed(pulled, MORE, "--no-cache")
    assert reference.returncode == 0, reference.stderr
    blob = weights_blob(pulled)
    good = blob.read_bytes()
    offset, length = tensor_span(blob, TENSOR)
    bad = bytearray(good)
    bad[offset:offset + length] = finite_garbage(length)
    blob.unlink()
    blob.write_bytes(bytes(bad))
    refused = embed(pulled, MORE)
    assert refused.returncode == 1 and "does not match its hash" in one_line_error(refused)
    assert vector_files(pulled.home) == []
    blob.unlink()
    blob.write_bytes(good)
    again = embed(pulled, MORE)
    assert again.returncode == 0, again.stderr
    np.testing.assert_array_equal(vectors(again.stdout), vectors(reference.stdout))


# -- 9. a broken vector cache --------------------------------------------------------------


def _made_cache(run: Embctl, n: int) -> tuple[Path, np.ndarray, list[str]]:
    texts = [f"sentence number {i} about {i % 7} things" for i in range(n)]
    proc = embed(run, texts)
    assert proc.returncode == 0, proc.stderr
    path = cache_file(run.home)
    assert not Path(f"{path}-wal").exists()  # checkpointed at close: all rows in the file
    return path, vectors(proc.stdout), texts


def test_truncated_cache_is_salvaged_and_the_rest_recomputed(pulled):
    path, clean, texts = _made_cache(pulled, 200)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)

    check = pulled("verify")
    assert check.returncode == 1 and "run with --repair" in check.stderr
    repair = pulled("verify", "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "Traceback" not in repair.stderr
    saved_line = next(x for x in repair.stdout.splitlines() if "saved" in x)
    saved = int(saved_line.split("saved ")[1].split()[0])
    assert f"saved {saved} of 200 vectors" in saved_line and 0 < saved < 200
    assert f"{200 - saved} could not be read" in saved_line

    after = pulled("verify")
    assert after.returncode == 0, after.stdout + after.stderr
    listed = json.loads(pulled("ls", "--json", check=True).stdout)
    (entry,) = [e for e in listed if e["kind"] == "vectors"]
    assert entry["status"] == "ok" and entry["count"] == saved
    again = embed(pulled, texts)
    assert again.returncode == 0, again.stderr
    assert f"{saved} cache hits, {200 - saved} computed" in again.stderr
    np.testing.assert_array_equal(vectors(again.stdout), clean)  # what was saved is right


@pytest.mark.parametrize("content", [b"", "random"], ids=["zero-bytes", "random-bytes"])
def test_unreadable_cache_file_is_dropped_by_repair(pulled, content):
    path, _, texts = _made_cache(pulled, 5)
    path.write_bytes(random.Random(3).randbytes(300_000) if content == "random" else content)
    old = time.time() - 3600  # left so long ago: not a file being created right now
    os.utime(path, (old, old))

    check = pulled("verify")
    assert check.returncode == 1 and "run with --repair" in check.stderr
    repair = pulled("verify", "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "dropped the file" in repair.stdout and "nothing could be read" in repair.stdout
    assert vector_files(pulled.home) == []
    assert pulled("verify").returncode == 0
    again = embed(pulled, texts)
    assert again.returncode == 0 and "0 cache hits, 5 computed" in again.stderr


def test_salvage_keeps_meta_and_rows_of_a_file_with_a_damaged_index(pulled):
    """Only an index is broken: every vector can be read, and all of them are kept."""
    path, clean, texts = _made_cache(pulled, 60)
    conn = sqlite3.connect(path)
    (page,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = "
                           "'vectors_last_used'").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with open(path, "r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(b"\xff" * page_size)
    assert pulled("verify").returncode == 1
    repair = pulled("verify", "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "saved 60 of 60 vectors" in repair.stdout
    assert pulled("verify").returncode == 0
    again = embed(pulled, texts)
    assert "60 cache hits, 0 computed" in again.stderr
    np.testing.assert_array_equal(vectors(again.stdout), clean)


# -- 10. a run that commits nothing leaves no cache file -----------------------------------


@pytest.mark.parametrize("fault", [Fault(status=401, message="Incorrect API key provided"),
                                   Fault(status=500, times=None)], ids=["401", "500"])
def test_failed_openai_run_leaves_no_cache_file(oa, fake, fault):
    fake.add_faults(fault)
    proc = oa("embed", "openai:test-embed", "--lines", input=lines(MORE), timeout=120)
    assert proc.returncode == 1
    one_line_error(proc)
    assert vector_files(oa.home) == []  # no .sqlite, no -wal, no -shm
    listed = json.loads(oa("ls", "--json", check=True).stdout)
    assert [e for e in listed if e["kind"] == "vectors"] == []

    fake.reset()
    ok = oa("embed", "openai:test-embed", "--lines", input=lines(MORE), timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert [n for n in vector_files(oa.home) if n.endswith(".sqlite")] != []


@pytest.mark.e2e  # a heavy-import check: a fresh interpreter
def test_python_api_creates_no_cache_file_before_a_commit(pulled):
    """embctl.load opened (and created) its cache file at once: a load that embeds nothing
    left an empty file.  Now the first commit creates it."""
    script = ("import sys, embctl\n"
              f"m = embctl.load({MODEL!r})\n"
              "print(m.cache_path)\n"
              "m.close()\n"
              "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", script], env=pulled.env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(".sqlite")
    assert vector_files(pulled.home) == []


def test_lazy_store_creates_its_file_with_the_first_commit(tmp_path):
    """In process: what the pipeline and embctl.load open.  Lookups before the file exists
    create nothing; the committer's first commit creates it, and a store opened earlier then
    reads it."""
    from embctl.embed.adapter import TextAdapter
    from embctl.embed.vectorizer import Vectorizer
    from embctl.vectors import naming, scan, store

    ns = {"backend": "test", "repo_id": "org/model", "revision": "b" * 40}
    early = store.VectorStore.open(ns, root=tmp_path, create=False)
    path = naming.store_path(ns, tmp_path)
    assert early.get_many([early.key(b"x")]) == {} and early.count() == 0
    early.mark_stores_text()
    early.close()
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []

    from embctl.backends import Embedder

    class Model(Embedder):
        namespace = ns
        dim = 2

        def embed(self, inputs):
            return np.array([[len(t), 1] for t in inputs], dtype=np.float32)

    reader = store.VectorStore.open(ns, root=tmp_path, create=False)
    writer = store.VectorStore.open(ns, root=tmp_path, create=False)
    writer.mark_stores_text()
    v = Vectorizer(Model(), writer, TextAdapter(), store_text=True)
    v.vectors(["one", "three"])
    v.close()
    assert path.exists() and reader.get_many([reader.key(b"one")]) != {}
    reader.close()
    (entry,) = scan.vector_entries(tmp_path)
    assert entry.count == 2 and entry.extra["stores_text"] is True
