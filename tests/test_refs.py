"""Model references: aliases, bare names, prefixes, revisions, and malformed input."""

from __future__ import annotations

import pytest

from embctl.errors import UsageError
from embctl.registry import resolve


@pytest.mark.parametrize(
    ("text", "backend", "repo_id", "revision", "alias"),
    [
        ("all-MiniLM-L6-v2", "st", "sentence-transformers/all-MiniLM-L6-v2", None,
         "all-MiniLM-L6-v2"),
        ("bge-small-en-v1.5", "st", "BAAI/bge-small-en-v1.5", None, "bge-small-en-v1.5"),
        ("e5-small-v2@v1", "st", "intfloat/e5-small-v2", "v1", "e5-small-v2"),
        ("paraphrase-MiniLM-L3-v2", "st", "sentence-transformers/paraphrase-MiniLM-L3-v2", None,
         None),
        ("BAAI/bge-base-en", "st", "BAAI/bge-base-en", None, None),
        ("st:org/name@refs/pr/1", "st", "org/name", "refs/pr/1", None),
        ("org/name@" + "a" * 40, "st", "org/name", "a" * 40, None),
    ],
)
def test_resolve(text, backend, repo_id, revision, alias):
    model = resolve(text)
    assert (model.backend, model.repo_id, model.revision, model.alias) == (
        backend, repo_id, revision, alias)


@pytest.mark.parametrize(
    "text",
    ["", " ", "a/../b", "..", "/abs/path", "~/x", "org//name", "org/na me", "a/b/c", "org/name@",
     "org/name@a..b", "org/-bad", "org/bad-", "bad--x/y", "org/name.git", "nope:org/name",
     "org/name@bad rev", "C:\\models\\x", "org/" + "x" * 97, "st:", "org/na\x00me"],
)
def test_malformed(text):
    with pytest.raises(UsageError):
        resolve(text)
