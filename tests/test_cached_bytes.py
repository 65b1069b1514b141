"""Bytes the cache holds are never fetched again, whichever backend asks, and work offline.

Issue #22, case 6: with all-MiniLM-L6-v2 complete in the cache for st, ``pull matrix:`` of it
range-read its 46.9 MB tensor from the Hub again, and offline refused.  The test Hub's own
request log is the proof of what went over the network.
"""

from __future__ import annotations

import json

import numpy as np
from support.homes import damage
from support.hub import MINILM
from support.matrix_fixtures import tensor_bytes
from support.runner import Embctl, one_line_error

MATRIX = f"matrix:{MINILM}"
TENSOR = "embeddings.word_embeddings.weight"
TEXTS = ["hello world", "the cat sat on the mat", "bytes the cache holds"]


def weight_requests(hub) -> list:
    """Every request the hub saw for the weights (headers, ranges, whole files)."""
    return hub.requests_for("*/model.safetensors")


def pull_json(run: Embctl, *args: str, env: dict | None = None) -> dict:
    proc = run("pull", "--json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


def vectors(run: Embctl, env: dict | None = None) -> np.ndarray:
    proc = run("embed", MATRIX, "--lines", "-q", input="\n".join(TEXTS) + "\n", env=env)
    assert proc.returncode == 0, proc.stderr
    return np.array([json.loads(line)["embedding"] for line in proc.stdout.splitlines()])


def matrix_data(summary: dict) -> bytes:
    from embctl_matrix.matrices.format import read_header

    _, offset = read_header(summary["path"])
    with open(summary["path"], "rb") as f:
        f.seek(offset)
        return f.read()


def empty_home_vectors(embctl: Embctl, hub) -> np.ndarray:
    """What a matrix pull on an empty home gives: the tensor range-read from the Hub."""
    hub.reset_stats()
    summary = pull_json(embctl, MATRIX)
    assert summary["downloaded_bytes"] > 46_000_000  # the hub really served it here
    assert weight_requests(hub)
    return vectors(embctl)


def test_matrix_pull_reads_the_tensor_the_st_pull_cached(pulled, embctl, hub, hub_root):
    summary = pull_json(pulled, MATRIX)
    assert weight_requests(hub) == []  # no header read, no range, nothing
    assert hub.bytes_by_path[(MINILM, "model.safetensors")] == 0
    assert summary["downloaded_bytes"] == 0 and summary["up_to_date"] is False
    assert summary["cache_bytes"] > 46_000_000
    assert summary["revision"] == (pulled.repo_dir / "refs" / "main").read_text()
    assert matrix_data(summary) == tensor_bytes(hub_root / MINILM / "model.safetensors",
                                                TENSOR)
    got = vectors(pulled)
    assert np.array_equal(got, empty_home_vectors(embctl, hub))


def test_matrix_pull_works_offline_from_the_st_model(pulled, embctl, hub):
    offline = {"HF_HUB_OFFLINE": "1"}
    proc = pulled("pull", MATRIX, env=offline)
    assert proc.returncode == 0, proc.stderr
    assert "read from the cache" in proc.stderr
    assert hub.requests == []  # offline: not one request of any kind
    got = vectors(pulled, env=offline)
    assert np.array_equal(got, empty_home_vectors(embctl, hub))


def test_embed_matrix_offline_needs_no_pull_when_st_cached_it(pulled, embctl, hub):
    got = vectors(pulled, env={"HF_HUB_OFFLINE": "1"})
    assert hub.requests == []
    assert np.array_equal(got, empty_home_vectors(embctl, hub))


def test_a_blob_cached_under_another_commit_is_read_not_fetched(pulled, hub):
    before = (pulled.repo_dir / "refs" / "main").read_text()
    hub.add_extra_entry(MINILM, "NOTES.md", b"main moved; the weights did not\n")
    summary = pull_json(pulled, MATRIX)
    assert summary["revision"] == hub.commit_sha(MINILM) != before
    assert weight_requests(hub) == []
    assert summary["downloaded_bytes"] == 0 and summary["cache_bytes"] > 46_000_000


def test_a_damaged_cached_blob_is_never_read(pulled, hub, hub_root):
    commit = (pulled.repo_dir / "refs" / "main").read_text()
    damage(pulled.repo_dir / "snapshots" / commit / "model.safetensors",
           lambda data: data.__setitem__(-1, data[-1] ^ 0xFF))  # a byte of the tensor area
    proc = pulled("pull", MATRIX, env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    error = one_line_error(proc)
    assert "model.safetensors" in error and "HF_HUB_OFFLINE=1" in error
    assert "fails its hash" in proc.stderr
    summary = pull_json(pulled, MATRIX)  # online: the Hub's bytes, never the damaged ones
    assert summary["downloaded_bytes"] > 46_000_000 and summary["cache_bytes"] == 0
    assert weight_requests(hub)
    assert matrix_data(summary) == tensor_bytes(hub_root / MINILM / "model.safetensors",
                                                TENSOR)
