"""sentence-transformers imported without scikit-learn (``embctl_st.deferred``): a cold
``embctl embed`` with st saves the ~2 s scikit-learn and its imports take, and nothing else
changes.  Each check needs an interpreter that has imported neither yet: e2e."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.runner import heavy_imports

PLUGINS = str(Path(__file__).resolve().parents[1] / "plugins")

DEFERRED = r"""
import json, sys
import numpy as np
first = sys.argv[1] == "sklearn-first"
if first:
    import sklearn.metrics
from embctl_st.deferred import sklearn_deferred
with sklearn_deferred():
    import sentence_transformers
from sentence_transformers.util import similarity
during = "sklearn" in sys.modules
a = np.array([[0.0, 0.0], [1.0, 2.0]], dtype=np.float32)
got = similarity.pairwise_distances(a, a, metric="manhattan").tolist()
import sklearn.metrics
real = sklearn.metrics.pairwise_distances(a, a, metric="manhattan").tolist()
print(json.dumps({"sklearn_during_import": during, "got": got, "real": real,
                  "real_is_module_file": bool(getattr(sklearn.metrics, "__file__", None)),
                  "helper_module": similarity.pairwise_distances.__module__}))
"""


def _run(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", DEFERRED, mode], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": PLUGINS, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.e2e  # what a fresh interpreter imports
def test_sentence_transformers_imports_without_sklearn_and_its_helper_still_works():
    out = _run("fresh")
    assert out["sklearn_during_import"] is False
    assert out["got"] == out["real"] == [[0.0, 3.0], [3.0, 0.0]]
    assert out["real_is_module_file"]  # the stand-in is gone: the real module is imported


@pytest.mark.e2e  # what a fresh interpreter imports
def test_a_process_that_imported_sklearn_gets_the_plain_import():
    out = _run("sklearn-first")
    assert out["sklearn_during_import"] is True
    assert out["got"] == out["real"]
    assert out["helper_module"].startswith("sklearn.")  # the real function, no stand-in


@pytest.mark.e2e  # what a fresh interpreter imports
def test_embed_with_st_never_imports_sklearn(pulled, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a first line\na second line\n")
    out = tmp_path / "out.jsonl"
    heavy, stderr = heavy_imports(pulled.env, "embed", "all-MiniLM-L6-v2", "--lines", "-i",
                                  str(source), "--no-cache", "-o", str(out),
                                  heavy=("sentence_transformers", "sklearn"))
    assert {name.split(".")[0] for name in heavy} == {"sentence_transformers"}, stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and len(rows[0]["embedding"]) == 384
