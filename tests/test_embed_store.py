"""The vector store and the ls/rm/verify helpers, in process (no model needed)."""

from __future__ import annotations

import math
import sqlite3

from embctl.backends import Embedder, Model
from embctl.vectors import evict, naming, scan, sqlite, store

NS = {"backend": "st", "repo_id": "org/model", "revision": "a" * 40, "normalize": False}


def blob(*values: float) -> bytes:
    return store.blob_from_floats(values)


def test_namespace_changes_file_and_keys(tmp_path):
    other = {**NS, "normalize": True}
    assert naming.store_path(NS, tmp_path) != naming.store_path(other, tmp_path)
    assert naming.namespace_id(NS) == naming.namespace_id(dict(reversed(NS.items())))
    a, b = naming.KeyMaker(naming.namespace_id(NS)), naming.KeyMaker(naming.namespace_id(other))
    assert a(b"text") != b(b"text") and a(b"text") == a(b"text")


def test_put_get_count_and_listing(tmp_path):
    s = store.VectorStore.open(NS, ref="model", root=tmp_path)
    k1, k2 = s.key(b"one"), s.key(b"two")
    assert s.put_many([(k1, blob(1, 0, 0), None), (k2, blob(0, 1, 0), "two")]) == 2
    assert s.put_many([(k1, blob(9, 9, 9), None)]) == 0  # an existing key is kept
    assert s.get_many([k1, k2, s.key(b"three")]) == {k1: blob(1, 0, 0), k2: blob(0, 1, 0)}
    assert s.count() == 2 and s.dim == 3
    s.close()
    (entry,) = scan.vector_entries(tmp_path)
    assert (entry.kind, entry.ref, entry.repo_id, entry.dim, entry.count) == (
        "vectors", "org/model", "org/model", 3, 2)  # named by what it is (embctl.naming)
    assert entry.revision == "a" * 40 and entry.size_bytes > 0 and entry.last_used


def test_verify_flags_bad_vectors_and_repair_removes_them(tmp_path):
    s = store.VectorStore.open(NS, root=tmp_path)
    s.put_many([(s.key(b"ok"), blob(1, 2, 3), None), (s.key(b"nan"), blob(math.nan, 0, 1), None),
                (s.key(b"inf"), blob(math.inf, 0, 1), None), (s.key(b"zero"), blob(0, 0, 0), None),
                (s.key(b"short"), blob(1, 2), None)])
    s.close()
    (check,) = scan.verify_vectors(root=tmp_path)
    assert not check.ok and check.checked == 5
    assert check.bad == {"nan": 1, "inf": 1, "zero_norm": 1, "wrong_dim": 1}
    (check,) = scan.verify_vectors(root=tmp_path, repair=True)
    assert check.removed == 4
    (check,) = scan.verify_vectors(root=tmp_path)
    assert check.ok and check.checked == 1


def test_verify_reports_corrupt_file(tmp_path):
    path = naming.store_path(NS, tmp_path)
    path.write_bytes(b"garbage" * 1000)
    (check,) = scan.verify_vectors(root=tmp_path)
    assert not check.ok and check.problems


def test_remove_by_model_namespace_and_dry_run(tmp_path):
    for ns in (NS, {**NS, "normalize": True}, {**NS, "repo_id": "org/other"}):
        s = store.VectorStore.open(ns, root=tmp_path)
        s.put_many([(s.key(b"x"), blob(1, 2, 3), None)])
        s.close()
    model = Model("org/model", "st", "org/model")
    dry = scan.remove_vectors(model, dry_run=True, root=tmp_path)
    assert len(dry) == 2 and len(scan.vector_entries(tmp_path)) == 3
    removed = scan.remove_vectors(model, root=tmp_path)
    assert len(removed) == 2 and all(e.size_bytes > 0 for e in removed)
    (left,) = scan.vector_entries(tmp_path)
    assert left.repo_id == "org/other"
    assert scan.remove_vectors(namespace=left.extra["namespace"][:8], root=tmp_path)
    assert scan.vector_entries(tmp_path) == []


def test_eviction_keeps_recently_used(tmp_path):
    s = store.VectorStore.open(NS, root=tmp_path)
    old = [(s.key(f"old{i}".encode()), blob(*([1.0] * 384)), None) for i in range(200)]
    s.put_many(old)
    s.conn.execute("UPDATE vectors SET last_used = last_used - 86400")
    new = [(s.key(f"new{i}".encode()), blob(*([1.0] * 384)), None) for i in range(100)]
    s.put_many(new)
    s.close()
    evicted, _ = evict.enforce_cap(300_000, tmp_path)
    assert evicted >= 100
    s = store.VectorStore.open(NS, root=tmp_path)
    assert len(s.get_many([k for k, _, _ in new])) == 100
    assert s.count() == 300 - evicted
    s.close()


def test_concurrent_connections_do_not_lock(tmp_path):
    a = store.VectorStore.open(NS, root=tmp_path)
    b = store.VectorStore.open(NS, root=tmp_path)
    with a.snapshot():  # a long reader does not block writers under WAL
        b.put_many([(b.key(b"x"), blob(1, 2, 3), None)])
    assert a.get_many([a.key(b"x")])
    conn = sqlite3.connect(a.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    a.close()
    b.close()


# -- the committer thread and page sizes ---------------------------------------------------


def test_page_size_fits_whole_rows():
    assert sqlite.page_size_for(None) == 8192 and sqlite.page_size_for(384) == 8192
    assert sqlite.page_size_for(1536) == 32768 and sqlite.page_size_for(3072) == 65536
    for dim in (64, 256, 384, 512, 768, 1024, 1536, 3072):
        size = sqlite.page_size_for(dim)
        rows = (size - 100) // (dim * 4 + 48)
        assert rows >= 1 and (size - 100 - rows * (dim * 4 + 48)) < size // 10, dim


def test_new_file_gets_the_page_size_of_its_vectors(tmp_path):
    s = store.VectorStore.open(NS, root=tmp_path, dim=1536)
    assert s.conn.execute("PRAGMA page_size").fetchone()[0] == 32768
    s.close()
    again = store.VectorStore.open(NS, root=tmp_path, dim=384)  # an existing file keeps its own
    assert again.conn.execute("PRAGMA page_size").fetchone()[0] == 32768
    again.close()


def test_committer_serves_queued_vectors_then_commits_them(tmp_path):
    from embctl.vectors.committer import Committer

    s = store.VectorStore.open(NS, root=tmp_path)
    c = Committer(s)
    keys = [s.key(b"%d" % i) for i in range(300)]
    c.submit([(k, blob(i, 0), None) for i, k in enumerate(keys)])
    queued = c.pending(keys)
    # Queued or already committed: every vector is found by one of the two, none is lost.
    found = {**s.get_many([k for k in keys if k not in queued]), **queued}
    assert {bytes(v) for v in found.values()} == {blob(i, 0) for i in range(300)}
    c.close()
    assert c.error is None and c.pending(keys) == {}
    assert len(s.get_many(keys)) == 300 and s.count() == 300
    s.close()


def test_committer_failure_is_recorded_and_later_batches_dropped(tmp_path):
    from embctl.vectors.committer import Committer

    s = store.VectorStore.open(NS, root=tmp_path)
    c = Committer(s)
    c.submit([(s.key(b"a"), blob(1, 2), None)])
    c._pool.submit(lambda: None).result()  # the first batch is committed
    other = sqlite3.connect(s.path)  # then the table goes away under it: a real SQLite error
    other.execute("DROP TABLE vectors")
    other.commit()
    other.close()
    c.submit([(s.key(b"b"), blob(3, 4), None)])
    c.submit([(s.key(b"c"), blob(5, 6), None)])
    c.close()
    assert isinstance(c.error, sqlite3.OperationalError) and "vectors" in str(c.error)
    assert c.pending([s.key(b"b"), s.key(b"c")]) == {}
    s.close()


class _CountingEmbedder(Embedder):
    """A stand-in model: vector i of a text is (len(text), i); counts what it was asked."""

    namespace = {"backend": "test"}
    dim = 2
    batch_size = 4

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, inputs):
        import numpy as np

        self.seen.extend(inputs)
        return np.array([[len(t), i] for i, t in enumerate(inputs)], dtype=np.float32)


def test_vectorizer_never_recomputes_a_vector_queued_for_commit(tmp_path):
    from embctl.embed.adapter import TextAdapter
    from embctl.embed.vectorizer import Vectorizer

    s = store.VectorStore.open(NS, root=tmp_path)
    model = _CountingEmbedder()
    v = Vectorizer(model, s, TextAdapter(), batch_size=4)
    texts = [f"text {i}" for i in range(40)]
    first, hits, computed, _ = v.vectors(texts)
    again, hits2, computed2, _ = v.vectors(texts)  # right away: some may still be queued
    assert (hits, computed, hits2, computed2) == (0, 40, 40, 0) and again == first
    v.close()
    assert sorted(model.seen) == sorted(texts)
    reopened = store.VectorStore.open(NS, root=tmp_path)
    assert reopened.count() == 40
    reopened.close()


def test_vectorizer_goes_on_without_the_cache_when_a_commit_fails(tmp_path, capsys):
    from embctl.embed.adapter import TextAdapter
    from embctl.embed.vectorizer import Vectorizer

    s = store.VectorStore.open(NS, root=tmp_path)
    v = Vectorizer(_CountingEmbedder(), s, TextAdapter(), batch_size=4)
    v.vectors(["warm-up"])  # starts the committer
    v._committer._pool.submit(lambda: None).result()
    other = sqlite3.connect(s.path)
    other.execute("DROP TABLE vectors")
    other.commit()
    other.close()
    blob_, _, computed, _ = v.vectors([f"t{i}" for i in range(12)])
    v.vectors(["one more"])  # the failure is noticed by the next commit at the latest
    v.close()
    assert computed == 12 and len(blob_) == 12 * 2 * 4
    assert v.store is None
    assert "vector cache disabled" in capsys.readouterr().err


def test_started_windows_share_what_they_compute(tmp_path):
    """With concurrent calls the next window starts before the last is finished: a text in
    both is computed once, by the first, with or without a cache."""
    from embctl.embed.adapter import TextAdapter
    from embctl.embed.vectorizer import Vectorizer

    for s in (store.VectorStore.open(NS, root=tmp_path), None):
        model = _CountingEmbedder()
        v = Vectorizer(model, s, TextAdapter(), batch_size=3, concurrency=3)
        first = v.start([f"a{i}" for i in range(10)])
        second = v.start([f"a{i}" for i in range(5, 15)])  # a5..a9 are in flight
        blob1, hits1, computed1, dups1 = v.finish(first)
        blob2, hits2, computed2, dups2 = v.finish(second)
        v.close()
        assert (hits1, computed1, dups1, hits2, computed2, dups2) == (0, 10, 0, 0, 5, 5)
        assert sorted(model.seen) == sorted(f"a{i}" for i in range(15))
        assert blob2[:5 * 8] == blob1[5 * 8:]  # the same vectors, in input order


def test_a_cache_file_being_created_is_incomplete_not_broken(tmp_path):
    """Between a new file's first write and its schema's commit, `ls` and `verify` from other
    processes see a database without tables; left so for long, it is broken."""
    import os
    import time

    path = tmp_path / f"{'c' * 32}{naming.SUFFIX}"
    conn = sqlite.connect(path)  # what VectorStore.open does before creating the schema
    (entry,) = scan.vector_entries(tmp_path)
    assert entry.status == "incomplete" and "being created" in entry.extra["error"]
    (check,) = scan.verify_vectors(root=tmp_path)
    assert check.ok and not check.problems
    old = time.time() - scan.CREATING_GRACE_S - 5
    os.utime(path, (old, old))
    (entry,) = scan.vector_entries(tmp_path)
    assert entry.status == "broken" and "no such table" in entry.extra["error"]
    (check,) = scan.verify_vectors(root=tmp_path)
    assert not check.ok
    conn.close()
