"""``dimensions`` never silently cuts the vectors of a model that declares no Matryoshka
dimensions (issue #22, "also found").  The CLI refuses ``--dimensions`` with one line that
names the explicit opt-in, ``--truncate-dim``; what counts as a declaration is read from the
model's own files.  The server's 400 is tested with real clients in test_serve_embeddings.py.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from support.runner import one_line_error

TEXTS = "the refund policy\nshipping within three days\n"


def rows(stdout: str) -> np.ndarray:
    return np.array([json.loads(line)["embedding"] for line in stdout.splitlines()])


def test_embed_dimensions_is_refused_and_truncate_dim_cuts_on_purpose(pulled):
    proc = pulled("embed", "all-MiniLM-L6-v2", "--lines", "--dimensions", "64", input=TEXTS)
    assert proc.returncode == 2 and proc.stdout == ""
    error = one_line_error(proc)
    assert "--dimensions does not apply to the st backend" in error
    assert "--truncate-dim N" in error
    full = pulled("embed", "all-MiniLM-L6-v2", "--lines", "-q", input=TEXTS, check=True)
    cut = pulled("embed", "all-MiniLM-L6-v2", "--lines", "-q", "--truncate-dim", "64",
                 input=TEXTS, check=True)
    assert rows(cut.stdout).shape == (2, 64)
    np.testing.assert_allclose(rows(cut.stdout), rows(full.stdout)[:, :64], atol=1e-6)


CARD_TAG = "---\ntags:\n- sentence-transformers\n- loss:MatryoshkaLoss\n---\n# a model\n"
CARD_DIMS = ('---\ntags: [sentence-transformers]\n---\nLoss: MatryoshkaLoss with these '
             'parameters:\n```json\n{\n    "matryoshka_dims": [\n        384,\n        128\n'
             '    ]\n}\n```\n')


@pytest.mark.parametrize("files, declared", [
    ({}, False),  # all-MiniLM-L6-v2 as the Hub has it
    ({"README.md": CARD_TAG}, True),  # the tag sentence-transformers' cards carry
    ({"README.md": CARD_DIMS}, True),  # the loss's parameters in the card's text
    ({"README.md": "---\ntags: [matryoshka-doll-photos]\n---\n"}, False),
    ({"README.md": "---\ntags: [unclosed\n---\n"}, False),  # broken YAML declares nothing
    ({"config_sentence_transformers.json": '{"matryoshka_dims": [384, 256, 64]}'}, True),
    ({"config_sentence_transformers.json": '{"matryoshka_dims": []}'}, False),
])
def test_what_declares_matryoshka_dimensions(pulled, tmp_path, files, declared):
    from embctl.models.matryoshka import declares_matryoshka

    snapshot = pulled.repo_dir / "snapshots" / (pulled.repo_dir / "refs" / "main").read_text()
    folder = tmp_path / "model"  # the model's two small files that could declare it, copied
    folder.mkdir()
    for name in ("README.md", "config_sentence_transformers.json"):
        shutil.copyfile(snapshot / name, folder / name)
    assert "tags:" in (folder / "README.md").read_text()  # the real card, read for real
    for name, text in files.items():
        (folder / name).write_text(text)
    assert declares_matryoshka(folder) is declared
