"""The Vectorizer's planning, in process: a small deterministic embedder defined here (a real
class implementing the Embedder contract) on a real vector cache in tmp_path."""

from __future__ import annotations

import io
import json
import threading
import zlib

import numpy as np
import pytest

from embctl import backends
from embctl.backends import Backend, Model
from embctl.embed.adapter import InputAdapter, TextAdapter, adapter_for
from embctl.embed.batching import split, split_padded
from embctl.embed.dryrun import dry_run
from embctl.embed.outputs import Writer
from embctl.embed.records import Options
from embctl.embed.run import run
from embctl.embed.vectorizer import Vectorizer
from embctl.errors import EmbctlError
from embctl.namespace import namespace_for
from embctl.vectors.store import VectorStore

DIM = 3


MODEL = Model("fake", "test", "org/fake", "f" * 40)


class Embedder(backends.Embedder):
    """Vectors that depend on the text only; records every call.  ``poison`` texts come back
    as NaN; ``budget`` declares a token budget per call (one token per character)."""

    model = MODEL

    def __init__(self, *, batch_size: int | None = None, budget: int | None = None,
                 poison: frozenset[str] = frozenset(), concurrency: int = 1) -> None:
        self.dim = DIM
        self.calls: list[list[str]] = []
        self.poison = poison
        self.concurrency = concurrency
        self._lock = threading.Lock()
        if batch_size:
            self.batch_size = batch_size
        if budget:
            self.max_batch_tokens = budget

    def count_tokens(self, text: str) -> int:
        return len(text)

    def embed(self, inputs):
        with self._lock:
            self.calls.append(list(inputs))
        rows = [vector(t) for t in inputs]
        for i, text in enumerate(inputs):
            if text in self.poison:
                rows[i] = [float("nan")] * DIM
        return np.array(rows, dtype=np.float32)


def vector(text: str) -> list[float]:
    return [float(len(text)), float(zlib.crc32(text.encode()) % 1000), 1.0]


def open_store(tmp_path, embedder: Embedder, adapter: InputAdapter | None = None) -> VectorStore:
    adapter = adapter or TextAdapter()
    ns = namespace_for(MODEL, embedder, prefix=adapter.prefix, input_kind=adapter.kind)
    return VectorStore.open(ns, root=tmp_path)


def cached(tmp_path, embedder: Embedder, texts: list[str]) -> set[str]:
    """Which of ``texts`` the cache file holds now."""
    s = open_store(tmp_path, embedder)
    found = s.get_many([s.key(t.encode()) for t in texts])
    s.close()
    return {t for t in texts if s.key(t.encode()) in found}


def warm(tmp_path, texts: list[str]) -> None:
    """Cache ``texts`` through a Vectorizer of their own."""
    e = Embedder()
    v = Vectorizer(e, open_store(tmp_path, e), TextAdapter())
    v.vectors(texts)
    v.close()


def matrix(blob: bytes, n: int) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").reshape(n, DIM)


# -- planning ------------------------------------------------------------------------------


def test_a_window_computes_each_text_once(tmp_path):
    e = Embedder()
    v = Vectorizer(e, open_store(tmp_path, e), TextAdapter())
    texts = ["b", "a", "b", "c", "a", "b"]
    job = v.plan(texts)
    assert list(job.misses.values()) == ["b", "a", "c"]
    assert (job.hits, job.duplicates, len(job.batches)) == (0, 3, 1)
    blob, hits, computed, duplicates = v.vectors(texts)
    v.close()
    assert (hits, computed, duplicates) == (0, 3, 3)
    assert sorted(t for call in e.calls for t in call) == ["a", "b", "c"]
    np.testing.assert_array_equal(matrix(blob, 6), np.array([vector(t) for t in texts]))


def test_hits_come_from_the_cache_and_misses_from_the_model(tmp_path):
    warm(tmp_path, ["one", "two"])
    e = Embedder()
    v = Vectorizer(e, open_store(tmp_path, e), TextAdapter())
    texts = ["one", "three", "two", "one", "four"]
    job = v.plan(texts)
    assert job.hits == 3 and sorted(job.misses.values()) == ["four", "three"]
    blob, hits, computed, duplicates = v.vectors(texts)
    v.close()
    assert (hits, computed, duplicates) == (3, 2, 0)
    assert sorted(t for call in e.calls for t in call) == ["four", "three"]
    np.testing.assert_array_equal(matrix(blob, 5), np.array([vector(t) for t in texts]))
    assert cached(tmp_path, e, texts) == set(texts)


def test_without_a_cache_every_distinct_text_is_a_miss(tmp_path):
    e = Embedder()
    v = Vectorizer(e, None, TextAdapter(prefix="q: "))
    _, hits, computed, duplicates = v.vectors(["x", "y", "x"])
    v.close()
    assert (hits, computed, duplicates) == (0, 2, 1)
    assert e.calls == [["q: x", "q: y"]]  # the payload carries the prefix; the key does not


def test_batches_hold_batch_size_misses_longest_first():
    e = Embedder(batch_size=4)
    v = Vectorizer(e, None, TextAdapter())
    texts = [f"t{'x' * i}" for i in range(10)]
    job = v.plan(texts)
    sizes = [[len(job.misses[k]) for k in batch] for batch in job.batches]
    assert sizes == [[10, 9, 8, 7], [6, 5, 4, 3], [2, 1]]
    assert Vectorizer(e, None, TextAdapter(), batch_size=3).plan(texts).batches[0] == \
        list(job.misses)[-1:-4:-1]  # --batch-size wins over the embedder's preference


def test_a_token_budget_cuts_batches_before_it_is_passed():
    e = Embedder(batch_size=100, budget=10)
    v = Vectorizer(e, None, TextAdapter(prefix=">"))  # counted on the payload: prefix too
    texts = ["aaaa", "bbb", "cc", "dddddddddddd", "e", "ff"]
    job = v.plan(texts)
    got = [[job.misses[k] for k in batch] for batch in job.batches]
    assert got == [["dddddddddddd"], ["aaaa", "bbb"], ["cc", "ff", "e"]]
    assert split(["x" * 3] * 5, 2, 7, len) == [(0, 2), (2, 4), (4, 5)]
    assert split(list(range(5)), 2) == [(0, 2), (2, 4), (4, 5)]
    assert split([], 4, 10, len) == [] and split([], 4) == []


def test_a_model_that_pads_gets_cuts_where_padding_costs_more_than_a_call():
    e = Embedder(batch_size=64)
    e.call_cost = 50
    texts = ["x" * 200] * 3 + ["y" * 20] * 40  # 2 long and 40 short: apart, not padded to 200
    texts = [t + str(i) for i, t in enumerate(texts)]
    job = Vectorizer(e, None, TextAdapter()).plan(texts)
    assert [len(b) for b in job.batches] == [3, 40]
    e.call_cost = None  # a model that does not pad: batch_size alone
    assert [len(b) for b in Vectorizer(e, None, TextAdapter()).plan(texts).batches] == [43]
    # Equal sizes are never cut below batch_size; each cut pays for itself.
    assert split_padded([10] * 130, 64, 1) == [(0, 64), (64, 128), (128, 130)]
    assert split_padded([100, 99, 98, 2, 1], 64, 1000) == [(0, 5)]
    assert split_padded([100, 99, 98, 2, 1], 64, 10) == [(0, 3), (3, 5)]
    assert split_padded([], 8, 10) == [] and split_padded([5], 8, 10) == [(0, 1)]


def test_an_overlapping_window_in_flight_is_borrowed_not_recomputed(tmp_path):
    e = Embedder(batch_size=2, concurrency=2)
    v = Vectorizer(e, open_store(tmp_path, e), TextAdapter())
    first = v.start([f"a{i}" for i in range(6)])
    second = v.start([f"a{i}" for i in range(3, 9)])
    assert set(second.borrowed) == set(list(first.misses)[3:])
    assert sorted(second.misses.values()) == ["a6", "a7", "a8"]
    blob1, *_ = v.finish(first)
    blob2, hits2, computed2, duplicates2 = v.finish(second)
    v.close()
    assert (hits2, computed2, duplicates2) == (0, 3, 3)
    assert sorted(t for call in e.calls for t in call) == sorted(f"a{i}" for i in range(9))
    assert blob2[:3 * DIM * 4] == blob1[3 * DIM * 4:]


def test_a_non_finite_vector_fails_its_batch_and_is_never_cached(tmp_path):
    e = Embedder(batch_size=2, poison=frozenset({"c2"}))
    v = Vectorizer(e, open_store(tmp_path, e), TextAdapter())
    texts = ["c0", "c1", "c2", "c3"]  # one length: batches keep input order
    with pytest.raises(EmbctlError, match="NaN or infinite values"):
        v.vectors(texts)
    v.close()
    assert cached(tmp_path, e, texts) == {"c0", "c1"}  # the batch before it was paid for
    assert e.calls == [["c0", "c1"], ["c2", "c3"]]


# -- the dry run plans as the run does -------------------------------------------------------


class Rows(Writer):
    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def write(self, records, matrix) -> None:
        self.rows.extend(matrix)

    def close(self, ok: bool) -> None:
        pass


def jsonl(texts: list[str]) -> bytes:
    return b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)


def test_the_dry_run_plans_what_the_run_then_does(tmp_path):
    """Same windows, same cache: the dry run counts exactly the batches the run sends."""
    warm(tmp_path, ["w1", "w3", "w5"])
    texts = [f"w{i % 7}{'!' * (i % 3)}" for i in range(20)] + ["w1", "w6", "w6"]
    opts = Options(batch_size=2, window_records=5)
    budgeted = Embedder(budget=7)
    plan = dry_run(Vectorizer(budgeted, open_store(tmp_path, budgeted), TextAdapter(),
                              batch_size=2), io.BytesIO(jsonl(texts)), opts)
    assert cached(tmp_path, budgeted, texts) == {"w1", "w3", "w5"}  # the dry run wrote none
    e = Embedder(budget=7)
    out = Rows()
    stats = run(Vectorizer(e, open_store(tmp_path, e), TextAdapter(), batch_size=2),
                io.BytesIO(jsonl(texts)), lambda _: out, opts)
    assert budgeted.calls == []
    assert (plan.read, plan.records) == (stats.read, stats.embedded) == (23, 23)
    assert plan.to_send == stats.computed == len(set(texts) - {"w1", "w3", "w5"})
    assert plan.batches == len(e.calls)
    # "cached" is what the cache held before the run; a repeat of a text sent in an earlier
    # window is a hit for the run (its vector is queued or committed by then).
    assert plan.cached + plan.duplicates == stats.hits + stats.duplicates
    assert plan.cached == sum(t in {"w1", "w3", "w5"} for t in texts)
    assert plan.tokens == sum(len(t) for t in set(texts) - {"w1", "w3", "w5"})
    np.testing.assert_array_equal(np.array(out.rows), np.array([vector(t) for t in texts]))


def test_dry_run_and_run_make_the_same_batches_window_by_window(tmp_path):
    warm(tmp_path, ["k2", "k4"])
    windows = [["k1", "k2", "k3", "k1"], ["k3", "k4", "k5", "k6", "k7"], ["k8", "k5", "k1"]]
    dry = Embedder(batch_size=2)
    planner = Vectorizer(dry, open_store(tmp_path, dry), TextAdapter())
    planned = []
    for window in windows:
        job = planner.plan(window)
        planner.claim(job)
        planned += [[job.misses[k] for k in batch] for batch in job.batches]
    planner.close()
    e = Embedder(batch_size=2)
    v = Vectorizer(e, open_store(tmp_path, e), TextAdapter())
    for window in windows:
        v.vectors(window)
    v.close()
    assert planned == e.calls and dry.calls == []


# -- adapters ------------------------------------------------------------------------------


class Folded(InputAdapter):
    """A backend's own adapter: case does not matter to its model."""

    kind = "folded"

    def key_bytes(self, item: str) -> bytes:
        return item.lower().encode()

    def payload(self, item: str) -> str:
        return item.lower()


def test_a_backend_brings_its_own_adapter(tmp_path):
    seen = {}

    class Fold(Backend):
        name = "fold"

        def input_adapter(self, options):
            seen.update(options)
            return Folded()

    adapter = adapter_for(Fold(), {"prefix": "", "x": 1})
    assert isinstance(adapter, Folded) and seen == {"prefix": "", "x": 1}
    text = adapter_for(Backend("plain"), {"prefix": "p: "})
    assert type(text) is TextAdapter and text.prefix == "p: "
    e = Embedder()
    ns = namespace_for(MODEL, e, prefix=adapter.prefix, input_kind=adapter.kind)
    assert ns["input_kind"] == "folded" and ns["prefix"] == "" and ns["repo_id"] == "org/fake"
    v = Vectorizer(e, VectorStore.open(ns, root=tmp_path), adapter)
    _, hits, computed, duplicates = v.vectors(["Abc", "aBC"])  # one key: one to compute
    v.close()
    assert (hits, computed, duplicates) == (0, 1, 1) and e.calls == [["abc"]]


def test_a_model_that_counts_tokens_gets_windows_sorted_and_cut_by_tokens():
    """Tokens, not characters: a 16-character word is one token, after six one-letter ones;
    each call pads to its first input and stays under the padded budget."""
    e = Embedder(batch_size=64)
    e.token_lengths = lambda texts: [len(t.split()) for t in texts]
    e.padded_budget = 12
    e.call_cost = 2
    texts = ["abcdefghij", "a b c d", "x y", "p q r", "klmnopqrstuvwxyz", "s t u v w x"]
    job = Vectorizer(e, None, TextAdapter()).plan(texts)
    got = [[job.misses[k] for k in batch] for batch in job.batches]
    tokens = [[len(t.split()) for t in batch] for batch in got]
    assert [n for batch in tokens for n in batch] == [6, 4, 3, 2, 1, 1]
    assert all(len(batch) * batch[0] <= 12 for batch in tokens)
    assert split_padded([6, 4, 3, 2, 1, 1], 64, 0, budget=12) == \
        [(0, 1), (1, 2), (2, 3), (3, 4), (4, 6)]
    assert split_padded([300, 5], 64, 0, budget=12) == [(0, 1), (1, 2)]  # over it: alone
