"""Whether a model declares Matryoshka dimensions: trained so that the first N dimensions of
its vectors are an embedding of their own.

Cutting the vectors of any other model gives worse vectors without a word, so a request for
fewer ``dimensions`` is refused for it (``embctl embed --truncate-dim N`` cuts on purpose).
sentence-transformers saves no such field in its config; what declares it, in the model's
folder:

- ``config_sentence_transformers.json`` with a ``matryoshka_dims`` list, where an author put it;
- the model card (``README.md``): a ``loss:MatryoshkaLoss`` or ``loss:Matryoshka2dLoss`` tag
  (what the cards sentence-transformers writes after training carry) or a ``matryoshka`` tag
  in its metadata, or ``"matryoshka_dims": [...]`` (the loss's parameters) in its text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TAGS = {"loss:matryoshkaloss", "loss:matryoshka2dloss", "matryoshka"}
DIMS_IN_TEXT = re.compile(r'"matryoshka_dims"\s*:\s*\[\s*\d')
CARD_LIMIT = 1 << 20  # a card larger than this is read in part


def declares_matryoshka(folder: Path) -> bool:
    """True when the model in ``folder`` declares Matryoshka dimensions (see above)."""
    return _in_config(folder / "config_sentence_transformers.json") or \
        _in_card(folder / "README.md")


def _in_config(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    dims = data.get("matryoshka_dims") if isinstance(data, dict) else None
    return isinstance(dims, list) and bool(dims) and all(
        isinstance(d, int) and d > 0 for d in dims)


def _in_card(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(CARD_LIMIT)
    except OSError:
        return False
    if DIMS_IN_TEXT.search(text):
        return True
    tags = _metadata(text).get("tags")
    if isinstance(tags, str):
        tags = [tags]
    return isinstance(tags, list) and any(str(t).strip().lower() in TAGS for t in tags)


def _metadata(text: str) -> dict:
    """The card's YAML front matter, as huggingface_hub reads it; {} when it has none."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*$", text, re.DOTALL | re.MULTILINE)
    if not match:
        return {}
    try:
        import yaml

        data = yaml.safe_load(match.group(1))
    except Exception:  # noqa: BLE001 - a broken card declares nothing
        return {}
    return data if isinstance(data, dict) else {}
