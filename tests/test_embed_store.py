"""The vector store and the ls/rm/verify helpers, in process (no model needed)."""

from __future__ import annotations

import math
import sqlite3

from embctl.backends import Model
from embctl.vectors import scan, store

NS = {"backend": "st", "repo_id": "org/model", "revision": "a" * 40, "normalize": False}


def blob(*values: float) -> bytes:
    return store.blob_from_floats(values)


def test_namespace_changes_file_and_keys(tmp_path):
    other = {**NS, "normalize": True}
    assert store.store_path(NS, tmp_path) != store.store_path(other, tmp_path)
    assert store.namespace_id(NS) == store.namespace_id(dict(reversed(NS.items())))
    a, b = store.KeyMaker(store.namespace_id(NS)), store.KeyMaker(store.namespace_id(other))
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
        "vectors", "model", "org/model", 3, 2)
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
    path = store.store_path(NS, tmp_path)
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
    evicted, _ = store.enforce_cap(300_000, tmp_path)
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
